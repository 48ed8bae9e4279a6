import Submit

// llmspool-cgi: the submit endpoint as a CGI program (see docs/cgi.md). Kept apart from the
// `llmspool` command so that a request pays only for the Spool, Settings and Submit modules at start-up:
// no Foundation, no ArgumentParser.
#if canImport(Glibc)
import Glibc
#endif

// Arguments are ignored: a server may build them from the client's query string.
exit(CGI.main())
