/* The socket fan-out load generator in C (a bench helper, not part of ahtwist).
 *
 * The same conversation and measurement as bench/loadgen.py's fan_out(), without
 * Python's cost per read: one epoll loop, one recv per ready member, delays
 * computed as the data arrives.  bench/loadgen.py's fan_out_c() compiles it
 * (cc -O2) into bench/.build/ and runs it:
 *
 *     fanout PORT[,PORT...] MEMBERS WINDOW SECONDS WARMUP SAMPLED 'JOIN LINE' [RATE]
 *
 * MEMBERS members connect over TCP (TCP_NODELAY) to 127.0.0.1, spread evenly
 * over the ports; each sends the join line and reads lines until one with
 * "status":"OK" (so a welcome line is skipped whether the server sends one or
 * not).  The first member of the first port is the sender: it keeps WINDOW
 * "say defaultRoom <CLOCK_MONOTONIC ns>" lines in flight, a say being done
 * when the sender receives its own copy.  Every member counts the lines
 * starting {"message":" it receives; the first SAMPLED / ports members of each
 * port also record now - the timestamp in the message.  After WARMUP seconds
 * the counts restart and run for SECONDS.  One JSON object on stdout, with
 * fan_out()'s keys.
 *
 * With RATE > 0 the load is open-loop instead: the sender says RATE times a
 * second on a fixed schedule (WINDOW is then unused), so the delays are
 * those of a server that is not kept saturated ("says_per_s_offered" in
 * the output).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PREFIX "{\"message\":\""
#define PREFIX_LEN (sizeof(PREFIX) - 1)
#define READ_SIZE (1 << 20)
#define MAX_PORTS 64

typedef struct {
    int fd;
    int sampled;
    char *pending; /* the incomplete last line of the previous read */
    size_t pending_len, pending_cap;
} member_t;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void *grow(void *p, size_t size) {
    p = realloc(p, size);
    if (!p) die("realloc");
    return p;
}

static void send_all(int fd, const char *data, size_t len) {
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) { /* a full send buffer on the non-blocking sender: wait for room */
                fd_set w;
                FD_ZERO(&w);
                FD_SET(fd, &w);
                select(fd + 1, NULL, &w, NULL, NULL);
                continue;
            }
            die("send");
        }
        data += n;
        len -= (size_t)n;
    }
}

static int connect_member(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {.tv_sec = 30};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* Blocking: read lines until one carries "status":"OK" (the join's reply). */
static void wait_ok(int fd) {
    static char buf[65536];
    size_t len = 0;
    for (;;) {
        ssize_t n = recv(fd, buf + len, sizeof buf - 1 - len, 0);
        if (n <= 0) {
            fprintf(stderr, "fanout: no OK reply to the join (%s)\n", n == 0 ? "closed" : strerror(errno));
            exit(1);
        }
        len += (size_t)n;
        buf[len] = 0;
        char *end;
        while ((end = strstr(buf, "\r\n")) != NULL) {
            *end = 0;
            if (strstr(buf, "\"status\":\"OK\"")) return;
            size_t used = (size_t)(end + 2 - buf);
            memmove(buf, end + 2, len - used + 1);
            len -= used;
        }
        if (len >= sizeof buf - 1) {
            fprintf(stderr, "fanout: a line over %zu bytes before the OK reply\n", sizeof buf);
            exit(1);
        }
    }
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* bench/loadgen.percentile: index round(p/100 * (n-1)), half to even as Python's round. */
static double percentile(const int64_t *v, size_t n, double p) {
    if (n == 0) return NAN;
    double index = nearbyint(p / 100.0 * (double)(n - 1));
    if (index < 0) index = 0;
    if (index > (double)(n - 1)) index = (double)(n - 1);
    return (double)v[(size_t)index];
}

static void print_ms(const char *key, double ns, int last) {
    if (isnan(ns))
        printf("\"%s\": NaN%s", key, last ? "" : ", ");
    else
        printf("\"%s\": %.3f%s", key, ns / 1e6, last ? "" : ", ");
}

int main(int argc, char **argv) {
    if (argc != 8 && argc != 9) {
        fprintf(stderr, "usage: fanout PORT[,PORT...] MEMBERS WINDOW SECONDS WARMUP SAMPLED 'JOIN LINE' [RATE]\n");
        return 2;
    }
    int ports[MAX_PORTS], nports = 0;
    for (char *p = strtok(argv[1], ","); p && nports < MAX_PORTS; p = strtok(NULL, ",")) ports[nports++] = atoi(p);
    int members_asked = atoi(argv[2]), window = atoi(argv[3]), sampled = atoi(argv[6]);
    double seconds = atof(argv[4]), warmup = atof(argv[5]), rate = argc == 9 ? atof(argv[8]) : 0;
    size_t join_len = strlen(argv[7]);
    char *join = grow(NULL, join_len + 2);
    memcpy(join, argv[7], join_len);
    if (join_len == 0 || join[join_len - 1] != '\n') join[join_len++] = '\n';

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    int per_port = members_asked / nports, sampled_per_port = sampled / nports;
    int count = per_port * nports;
    member_t *members = grow(NULL, sizeof(member_t) * (size_t)count);
    for (int i = 0; i < nports; i++)
        for (int j = 0; j < per_port; j++) {
            member_t *m = &members[i * per_port + j];
            memset(m, 0, sizeof *m);
            m->fd = connect_member(ports[i]);
            m->sampled = j < sampled_per_port;
        }
    for (int i = 0; i < count; i++) send_all(members[i].fd, join, join_len);
    for (int i = 0; i < count; i++) wait_ok(members[i].fd);

    int ep = epoll_create1(0);
    if (ep < 0) die("epoll_create1");
    int max_fd = 0;
    for (int i = 0; i < count; i++)
        if (members[i].fd > max_fd) max_fd = members[i].fd;
    member_t **by_fd = calloc((size_t)max_fd + 1, sizeof(member_t *));
    for (int i = 0; i < count; i++) {
        struct timeval zero = {0};
        setsockopt(members[i].fd, SOL_SOCKET, SO_RCVTIMEO, &zero, sizeof zero);
        by_fd[members[i].fd] = &members[i];
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = members[i].fd};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, members[i].fd, &ev) < 0) die("epoll_ctl");
    }
    int sender = members[0].fd;

    long long said = 0, said_at_start = 0, deliveries = 0;
    char line[64];
    for (int i = 0; i < (rate > 0 ? 0 : window); i++) {
        int len = snprintf(line, sizeof line, "say defaultRoom %lld\n", (long long)now_ns());
        send_all(sender, line, (size_t)len);
        said++;
    }
    size_t delays_len = 0, delays_cap = 1 << 16;
    int64_t *delays = grow(NULL, sizeof(int64_t) * delays_cap);
    char *buf = grow(NULL, READ_SIZE);
    struct epoll_event events[1024];
    int64_t start = now_ns();
    int64_t measure_from = start + (int64_t)(warmup * 1e9);
    int64_t stop_at = measure_from + (int64_t)(seconds * 1e9);
    int64_t measured_start = start;
    int measuring = 0;
    int64_t next_say = start; /* open loop: when the next say is due */

    for (;;) {
        int64_t t = now_ns();
        if (!measuring && t >= measure_from) {
            measuring = 1;
            deliveries = 0;
            delays_len = 0;
            measured_start = t;
            said_at_start = said;
        }
        if (t >= stop_at) break;
        int timeout = 500;
        if (rate > 0) {
            while (t >= next_say) {
                int l = snprintf(line, sizeof line, "say defaultRoom %lld\n", (long long)now_ns());
                send_all(sender, line, (size_t)l);
                said++;
                next_say = start + (int64_t)((double)said * 1e9 / rate);
            }
            timeout = (int)((next_say - t) / 1000000); /* ms, rounded down: never late by more than the loop */
        }
        int ready = epoll_wait(ep, events, 1024, timeout);
        if (ready < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int e = 0; e < ready; e++) {
            member_t *m = by_fd[events[e].data.fd];
            /* the previous read's incomplete line first, then the new bytes */
            size_t have = m->pending_len;
            if (have) memcpy(buf, m->pending, have);
            ssize_t n = recv(m->fd, buf + have, READ_SIZE - have, MSG_DONTWAIT);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) continue;
                die("recv");
            }
            if (n == 0) {
                fprintf(stderr, "fanout: the server closed a member\n");
                return 1;
            }
            int64_t arrived = now_ns();
            size_t len = have + (size_t)n;
            size_t cut = 0; /* the end of the last complete line */
            long long got = 0;
            for (size_t pos = 0; pos < len;) {
                char *nl = memchr(buf + pos, '\n', len - pos);
                if (!nl) break;
                size_t end = (size_t)(nl - buf);
                if (end - pos >= PREFIX_LEN && memcmp(buf + pos, PREFIX, PREFIX_LEN) == 0) {
                    got++;
                    if (measuring && m->sampled) {
                        int64_t ts = strtoll(buf + pos + PREFIX_LEN, NULL, 10);
                        if (delays_len == delays_cap) {
                            delays_cap *= 2;
                            delays = grow(delays, sizeof(int64_t) * delays_cap);
                        }
                        delays[delays_len++] = arrived - ts;
                    }
                }
                pos = cut = end + 1;
            }
            m->pending_len = len - cut;
            if (m->pending_len) {
                if (m->pending_len > m->pending_cap) {
                    m->pending_cap = m->pending_len * 2;
                    m->pending = grow(m->pending, m->pending_cap);
                }
                memcpy(m->pending, buf + cut, m->pending_len);
            }
            if (m->fd == sender && rate <= 0) /* its own copies complete its says: keep the window full */
                for (long long i = 0; i < got; i++) {
                    int l = snprintf(line, sizeof line, "say defaultRoom %lld\n", (long long)now_ns());
                    send_all(sender, line, (size_t)l);
                    said++;
                }
            if (measuring) deliveries += got;
        }
    }
    double elapsed = (double)(now_ns() - measured_start) / 1e9;
    for (int i = 0; i < count; i++) close(members[i].fd);
    close(ep);
    qsort(delays, delays_len, sizeof(int64_t), cmp_i64);
    printf("{\"members\": %d, \"nodes\": %d, \"says_in_flight\": %d, \"seconds\": %.2f, \"says\": %lld, "
           "\"deliveries\": %lld, \"deliveries_per_s\": %lld, ",
           count, nports, window, elapsed, said - said_at_start, deliveries, (long long)llround(deliveries / elapsed));
    if (rate > 0) printf("\"says_per_s_offered\": %g, ", rate);
    print_ms("delay_ms_p50", percentile(delays, delays_len, 50), 0);
    print_ms("delay_ms_p99", percentile(delays, delays_len, 99), 0);
    if (delays_len)
        print_ms("delay_ms_max", (double)delays[delays_len - 1], 1);
    else
        printf("\"delay_ms_max\": null");
    printf("}\n");
    return 0;
}
