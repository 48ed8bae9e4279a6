#!/usr/bin/env bash
# Several "hosts" on one machine for the bridge's multi-host tests and bench/multihost/run.sh.
# Needs root, iproute2, util-linux (unshare) and socat.
#
#   multihost.sh up NAME N NET BOOTSTRAP   make hosts 1..N: network namespace NAME-hI, a veth pair
#                                          to the Linux bridge NAME-br in the root namespace
#                                          (10.NET.0.1; host I is 10.NET.0.(I+1)), and the Kafka
#                                          brokers of BOOTSTRAP reachable inside at the same
#                                          127.0.0.1:PORT addresses (see below)
#   multihost.sh run NAME I CMD ARGS...    run CMD in host I's namespace, with its own UTS namespace
#                                          and host name NAME-hI (so the bridge's defaults that come
#                                          from the host name differ between hosts)
#   multihost.sh cut NAME I | heal NAME I  take host I's link down / bring it back up
#   multihost.sh down NAME                 stop the forwarders, delete the namespaces and the bridge
#
# librdkafka's mock cluster listens on 127.0.0.1 only and advertises those addresses in its
# metadata, so every client must reach it at 127.0.0.1:PORT. Each broker port is forwarded
# twice with socat: in the root namespace from 10.NET.0.1:PORT to 127.0.0.1:PORT (the mock), and
# in each host's namespace from 127.0.0.1:PORT to 10.NET.0.1:PORT. Every Kafka byte a host sends
# therefore crosses its veth and the bridge: taking the link down cuts the host off the brokers.
set -euo pipefail

cmd=${1:?usage: multihost.sh up|run|cut|heal|down NAME ...}
name=${2:?NAME}
state=/run/llmspool-multihost/$name

ports() { tr ',' '\n' <<<"$1" | sed 's/.*://'; }

case $cmd in
up)
    n=${3:?N}; net=${4:?NET}; bootstrap=${5:?BOOTSTRAP}
    # The forwarders outlive this script: they must not hold the caller's descriptors (Foundation's
    # Process, for one, waits for a descriptor it gave the child to close before it reports an exit).
    for fd in /proc/$$/fd/*; do
        fd=${fd##*/}
        if (( fd > 2 )); then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    mkdir -p "$state"
    echo "$net" >"$state/net"
    ip link add "$name-br" type bridge
    ip addr add "10.$net.0.1/24" dev "$name-br"
    ip link set "$name-br" up
    for p in $(ports "$bootstrap"); do
        socat "TCP-LISTEN:$p,bind=10.$net.0.1,reuseaddr,fork" "TCP:127.0.0.1:$p" </dev/null >/dev/null 2>&1 &
        echo $! >>"$state/pids"
    done
    for i in $(seq 1 "$n"); do
        ns=$name-h$i
        ip netns add "$ns"
        ip link add "$name-v$i" type veth peer name "$name-p$i"
        ip link set "$name-v$i" master "$name-br" up
        ip link set "$name-p$i" netns "$ns"
        ip -n "$ns" addr add "10.$net.0.$((i + 1))/24" dev "$name-p$i"
        ip -n "$ns" link set lo up
        ip -n "$ns" link set "$name-p$i" up
        for p in $(ports "$bootstrap"); do
            ip netns exec "$ns" socat "TCP-LISTEN:$p,bind=127.0.0.1,reuseaddr,fork" "TCP:10.$net.0.1:$p" </dev/null >/dev/null 2>&1 &
            echo $! >>"$state/pids"
        done
    done
    # The forwarders listen once their sockets exist: wait for them (at most ~5 s).
    for i in $(seq 1 "$n"); do
        for p in $(ports "$bootstrap"); do
            for _ in $(seq 1 50); do
                ip netns exec "$name-h$i" bash -c "exec 3<>/dev/tcp/127.0.0.1/$p" 2>/dev/null && break
                sleep 0.1
            done
        done
    done
    ;;
run)
    i=${3:?I}; shift 3
    exec ip netns exec "$name-h$i" unshare --uts sh -c 'hostname "$0" && exec "$@"' "$name-h$i" "$@"
    ;;
cut) ip -n "$name-h${3:?I}" link set "$name-p$3" down ;;
heal) ip -n "$name-h${3:?I}" link set "$name-p$3" up ;;
down)
    if [[ -f $state/pids ]]; then
        # The forwarders and the connections they forked.
        while read -r pid; do pkill -KILL -P "$pid" 2>/dev/null || true; kill -KILL "$pid" 2>/dev/null || true; done <"$state/pids"
    fi
    for ns in $(ip netns list | awk '{print $1}' | grep "^$name-h[0-9]*$" || true); do
        # Whatever still runs in the host (started by `run`) ends with it.
        for pid in $(ip netns pids "$ns"); do kill -9 "$pid" 2>/dev/null || true; done
        ip netns delete "$ns"
    done
    ip link delete "$name-br" 2>/dev/null || true
    rm -rf "$state"
    ;;
*) echo "multihost.sh: unknown command $cmd" >&2; exit 64 ;;
esac
