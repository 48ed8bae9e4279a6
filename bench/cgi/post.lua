-- wrk: POST a small text/plain job with a bearer token (bench/cgi/run.sh).
wrk.method = "POST"
wrk.body = "Summarise RFC 3875 in one line"
wrk.headers["Content-Type"] = "text/plain"
wrk.headers["Authorization"] = "Bearer bench-token"
