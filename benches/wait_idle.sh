# Sourced by the benchmark scripts: `wait_idle PID [MAX_SECONDS]` returns once the process has
# used less than a fifth of a core over two seconds, three times in a row (at most MAX_SECONDS,
# default 1200), and prints how long it waited. A hub's first start builds in the background
# what is stale or missing (the statistical secret's tables: minutes on tens of millions of
# rows; pseudonymised extracts on a habilitation's first query), and a figure taken meanwhile
# measures that build, not the requests.
wait_idle() {
    local pid=$1 max=${2:-1200} tick quiet=0 waited=0 before after
    tick=$(getconf CLK_TCK)
    while ((quiet < 3 && waited < max)); do
        before=$(awk '{print $14 + $15}' "/proc/$pid/stat") || return 1
        sleep 2
        waited=$((waited + 2))
        after=$(awk '{print $14 + $15}' "/proc/$pid/stat") || return 1
        if (((after - before) * 5 < 2 * tick)); then quiet=$((quiet + 1)); else quiet=0; fi
    done
    echo "server idle after ${waited} s (background builds finished)"
}
