/*
 * loadgen.c - single-threaded epoll WebSocket load generator for bench/run.py.
 *
 * RFC 6455 client: HTTP/1.1 upgrade with a fixed Sec-WebSocket-Key (the
 * response's Sec-WebSocket-Accept is checked), masked client frames, server
 * frames parsed incrementally (7/16/64-bit lengths, fragmentation, ping ->
 * pong), partial reads and writes handled.  No extensions are offered, so no
 * compression is ever negotiated.
 *
 * Modes:
 *   echo       --clients N --inflight K --size B [--binary]
 *              every client keeps K messages in flight; counts echoed
 *              messages (each is checked byte for byte).
 *   broadcast  --clients N --size B --window W
 *              client 0 sends; the server relays every message to all N
 *              clients (sender included); at most W messages are not yet
 *              received by all N clients.  Counts deliveries (messages
 *              received, summed over clients).  Sequence numbers in the
 *              payload check order and completeness.
 *   pubsub     --clients N --size B --window W
 *              WAMP v2 pub/sub: N subscriber connections plus 1 publisher,
 *              all offering the subprotocol wamp.2.json (the response must
 *              select it).  Each subscriber sends HELLO, then SUBSCRIBE to
 *              one topic after WELCOME; the publisher sends HELLO.  Once
 *              all N are subscribed the publisher PUBLISHes (no
 *              acknowledgement) with at most W publications not yet received
 *              by all N subscribers; the payload is one string of B
 *              characters starting with a 16-hex-digit sequence number.
 *              Every EVENT is parsed (subscription id, details, payload) and
 *              order and completeness are checked per subscriber.  Counts
 *              deliveries (EVENTs received, summed over subscribers).
 *   handshake  --concurrency C
 *              C loops of connect -> upgrade -> 101 -> close frame -> server
 *              close frame -> server EOF -> close.  Counts completed loops.
 *   idle       --clients N [--warm M]
 *              opens M connections, prints {"event":"warm",...}, waits for a
 *              line on stdin, opens the rest up to N, prints
 *              {"event":"held",...}, waits for a line or EOF on stdin, then
 *              prints the final line and exits.
 *
 * echo/broadcast/pubsub/handshake: all clients connect first (pubsub: and
 * join and subscribe), then a warm-up of --warmup seconds, then a measured
 * window of --duration seconds.  At both
 * window edges the loadgen snapshots, in the same instant, its counters, its
 * own CPU time (getrusage) and, with --server-pid, the server's utime+stime
 * from /proc/PID/stat, so the server CPU is measured over exactly the window
 * the counts come from.  The result is one JSON line on stdout.
 *
 * Build: gcc -O2 -o loadgen loadgen.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define WS_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define WS_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
#define MAX_EVENTS 1024
#define RBUF_SIZE (256 * 1024)
#define HBUF_SIZE 2048
#define MAX_IOV 64
#define SEQ_DIGITS 16
#define STALL_SECONDS 10.0
#define PS_MSG_MAX 1024 /* longest WAMP message a pubsub connection buffers */
#define PS_REALM "realm1"
#define PS_TOPIC "com.example.bench"
#define PS_SUBPROTOCOL "wamp.2.json"

enum { M_ECHO, M_BROADCAST, M_HANDSHAKE, M_IDLE, M_PUBSUB, N_MODES };
enum { S_FREE, S_CONNECTING, S_UPGRADING, S_OPEN, S_CLOSING, S_AWAIT_EOF };
enum { P_OPENING, P_SYNC, P_WARM, P_MEASURE };

/* WAMP session state of a pubsub connection */
enum { W_NONE, W_HELLO_SENT, W_SUBSCRIBING, W_READY };

static const char *mode_names[] = {"echo", "broadcast", "handshake", "idle", "pubsub"};
static const unsigned char mask_key[4] = {0x37, 0xfa, 0x21, 0x3d};

typedef struct {
    int fd, state;
    uint32_t events; /* currently registered epoll events */
    /* output: obuf holds whole frames (handshake request, control frames,
     * broadcast frames); pend_data counts copies of the precomputed echo
     * frame still to write, data_off is the progress inside the first. */
    unsigned char *obuf;
    size_t olen, ooff, ocap;
    uint64_t pend_data;
    size_t data_off;
    /* upgrade response */
    char hbuf[HBUF_SIZE];
    size_t hlen;
    /* frame parser */
    unsigned char fh[14];
    int fhlen, fhneed, in_payload, opcode, msg_opcode;
    uint64_t remaining, msg_off;
    unsigned char ctrl[125];
    int ctrl_len;
    char seq[SEQ_DIGITS];
    int64_t last_seq;
    /* pubsub: the current message (first PS_MSG_MAX bytes), the WAMP state */
    char *mbuf;
    int wamp, publisher;
    uint64_t sub_id;
} conn_t;

/* options */
static int opt_mode = -1, opt_port = 0, opt_clients = 1, opt_inflight = 1, opt_binary = 0;
static int opt_window = 10, opt_concurrency = 32, opt_warm = 0, opt_connect_conc = 64;
static size_t opt_size = 32;
static double opt_warmup = 1.0, opt_duration = 4.0, opt_connect_timeout = 120.0;
static long opt_server_pid = 0;
static const char *opt_host = "127.0.0.1";

static struct sockaddr_in g_addr;
static int g_ep;
static conn_t *g_conns;
static int g_nconns;
static unsigned char g_rbuf[RBUF_SIZE];
static char g_request[640];
static size_t g_request_len;
static unsigned char *g_payload; /* reference payload (echo) */
static unsigned char *g_dframe;  /* precomputed masked echo frame */
static size_t g_dframe_len;
static int g_phase = P_OPENING;

/* counters */
static uint64_t g_msgs, g_bytes, g_handshakes, g_errors, g_server_closed;
static uint64_t g_opened, g_attempted, g_in_progress;
static uint64_t g_fail_refused, g_fail_reset, g_fail_eof, g_fail_status, g_fail_other;
static uint64_t g_fail_timeout;
static uint64_t g_reads, g_writes, g_waits; /* syscall counters */
static char g_first_error[160];

/* broadcast state */
static int64_t bc_next_seq, bc_base, bc_complete, bc_sync_seq = -1;
static int bc_synced, bc_sync_got;
static uint32_t *bc_cnt;
static double bc_sync_sent_at;

/* pubsub state: bc_* above count the window; publications start at seq 0 */
static int ps_welcomed, ps_subscribed; /* publisher + subscribers welcomed; subscribed */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double self_cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* utime+stime of the server process (all threads) in seconds, -1 if unknown */
static double server_cpu_s(void) {
    if (opt_server_pid <= 0) return -1.0;
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%ld/stat", opt_server_pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1.0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return -1.0;
    /* fields after ')': 3=state ... 14=utime 15=stime */
    unsigned long long ut = 0, st = 0;
    int field = 2;
    char *save = NULL;
    for (char *tok = strtok_r(p + 1, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        field++;
        if (field == 14) ut = strtoull(tok, NULL, 10);
        if (field == 15) {
            st = strtoull(tok, NULL, 10);
            break;
        }
    }
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void note_error(const char *fmt, ...) {
    g_errors++;
    if (g_first_error[0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_first_error, sizeof g_first_error, fmt, ap);
    va_end(ap);
    for (char *p = g_first_error; *p; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20) *p = '?';
}

static void die(const char *msg) {
    printf("{\"error\": \"%s\"}\n", msg);
    fflush(stdout);
    exit(2);
}

static size_t build_frame(unsigned char *dst, int opcode, const unsigned char *p, size_t n) {
    size_t h = 0;
    dst[h++] = (unsigned char)(0x80 | opcode);
    if (n < 126) {
        dst[h++] = (unsigned char)(0x80 | n);
    } else if (n < 65536) {
        dst[h++] = 0x80 | 126;
        dst[h++] = (unsigned char)(n >> 8);
        dst[h++] = (unsigned char)n;
    } else {
        dst[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--) dst[h++] = (unsigned char)((uint64_t)n >> (8 * i));
    }
    memcpy(dst + h, mask_key, 4);
    h += 4;
    for (size_t i = 0; i < n; i++) dst[h + i] = p[i] ^ mask_key[i & 3];
    return h + n;
}

static void obuf_reserve(conn_t *c, size_t extra) {
    if (c->olen + extra <= c->ocap) return;
    size_t cap = c->ocap ? c->ocap : 256;
    while (cap < c->olen + extra) cap *= 2;
    c->obuf = realloc(c->obuf, cap);
    if (!c->obuf) die("out of memory");
    c->ocap = cap;
}

static void queue_bytes(conn_t *c, const void *p, size_t n) {
    obuf_reserve(c, n);
    memcpy(c->obuf + c->olen, p, n);
    c->olen += n;
}

static void queue_frame(conn_t *c, int opcode, const unsigned char *p, size_t n) {
    obuf_reserve(c, n + 14);
    c->olen += build_frame(c->obuf + c->olen, opcode, p, n);
}

static void set_events(conn_t *c, uint32_t ev) {
    if (ev == c->events) return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    if (epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &e) < 0) die("epoll_ctl MOD failed");
    c->events = ev;
}

static void conn_close(conn_t *c) {
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    if (c->state == S_CONNECTING || c->state == S_UPGRADING) g_in_progress--;
    c->state = S_FREE;
    c->olen = c->ooff = 0;
    c->pend_data = 0;
    c->data_off = 0;
}

/* fail a connection that has not completed its upgrade */
static void fail_open(conn_t *c, int err, int eof) {
    if (eof)
        g_fail_eof++;
    else if (err == ECONNREFUSED)
        g_fail_refused++;
    else if (err == ECONNRESET || err == EPIPE)
        g_fail_reset++;
    else
        g_fail_other++;
    if (eof)
        note_error("connection closed during upgrade");
    else
        note_error("connect/upgrade failed: %s", strerror(err));
    conn_close(c);
}

/* write as much as possible; returns -1 if the connection failed */
static int conn_flush(conn_t *c) {
    for (;;) {
        if (c->data_off > 0 || (c->ooff == c->olen && c->pend_data > 0)) {
            struct iovec iov[MAX_IOV];
            int k = 0;
            size_t want = 0;
            uint64_t frames = c->pend_data < MAX_IOV ? c->pend_data : MAX_IOV;
            iov[k].iov_base = g_dframe + c->data_off;
            iov[k].iov_len = g_dframe_len - c->data_off;
            want += iov[k++].iov_len;
            while ((uint64_t)k < frames) {
                iov[k].iov_base = g_dframe;
                iov[k].iov_len = g_dframe_len;
                want += iov[k++].iov_len;
            }
            g_writes++;
            ssize_t w = writev(c->fd, iov, k);
            if (w < 0) {
                if (errno == EAGAIN || errno == EINTR) break;
                return -1;
            }
            size_t got = (size_t)w, first = g_dframe_len - c->data_off;
            if (got < first) {
                c->data_off += got;
            } else {
                got -= first;
                c->pend_data -= 1 + got / g_dframe_len;
                c->data_off = got % g_dframe_len;
            }
            if ((size_t)w < want) break;
        } else if (c->ooff < c->olen) {
            g_writes++;
            ssize_t w = write(c->fd, c->obuf + c->ooff, c->olen - c->ooff);
            if (w < 0) {
                if (errno == EAGAIN || errno == EINTR) break;
                return -1;
            }
            c->ooff += (size_t)w;
            if (c->ooff < c->olen) break;
            c->ooff = c->olen = 0;
        } else {
            break;
        }
    }
    int pending = c->data_off > 0 || c->pend_data > 0 || c->ooff < c->olen;
    set_events(c, pending ? (EPOLLIN | EPOLLOUT) : EPOLLIN);
    return 0;
}

static int start_conn(conn_t *c) {
    g_attempted++;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        note_error("socket: %s", strerror(errno));
        g_fail_other++;
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&g_addr, sizeof g_addr) < 0 && errno != EINPROGRESS) {
        int err = errno;
        close(fd);
        if (err == ECONNREFUSED)
            g_fail_refused++;
        else
            g_fail_other++;
        note_error("connect: %s", strerror(err));
        return -1;
    }
    c->fd = fd;
    c->state = S_CONNECTING;
    c->olen = c->ooff = 0;
    c->pend_data = 0;
    c->data_off = 0;
    c->hlen = 0;
    c->fhlen = 0;
    c->fhneed = 2;
    c->in_payload = 0;
    c->msg_opcode = 0;
    c->msg_off = 0;
    c->last_seq = -1;
    queue_bytes(c, g_request, g_request_len);
    c->events = EPOLLIN | EPOLLOUT;
    struct epoll_event e = {.events = c->events, .data.ptr = c};
    if (epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &e) < 0) die("epoll_ctl ADD failed");
    g_in_progress++;
    return 0;
}

/* ---------------- message handling ---------------- */

static void seq_arrived(conn_t *c, int64_t seq);

static void bc_on_message(conn_t *c) {
    char tmp[SEQ_DIGITS + 1];
    memcpy(tmp, c->seq, SEQ_DIGITS);
    tmp[SEQ_DIGITS] = 0;
    char *end;
    int64_t seq = (int64_t)strtoull(tmp, &end, 16);
    if (end != tmp + SEQ_DIGITS) {
        note_error("broadcast: bad sequence number");
        return;
    }
    if (!bc_synced) {
        if (seq == bc_sync_seq) bc_sync_got++;
        c->last_seq = seq;
        return;
    }
    seq_arrived(c, seq);
}

/* order and completeness per receiver, and the window, once counting has started */
static void seq_arrived(conn_t *c, int64_t seq) {
    if (seq != c->last_seq + 1)
        note_error("%s: got seq %lld after %lld", mode_names[opt_mode], (long long)seq,
                   (long long)c->last_seq);
    c->last_seq = seq;
    if (seq < bc_base || seq >= bc_next_seq) return;
    bc_cnt[(seq - bc_base) % (uint64_t)opt_window]++;
    while (bc_complete < bc_next_seq &&
           bc_cnt[(bc_complete - bc_base) % (uint64_t)opt_window] == (uint32_t)opt_clients) {
        bc_cnt[(bc_complete - bc_base) % (uint64_t)opt_window] = 0;
        bc_complete++;
    }
}

/* ---------------- pubsub (WAMP over JSON) ---------------- */

/* a cursor over one JSON message; whitespace is allowed between tokens */
typedef struct {
    const char *p, *end;
} scan_t;

static void sc_ws(scan_t *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int sc_char(scan_t *s, char ch) {
    sc_ws(s);
    if (s->p >= s->end || *s->p != ch) return 0;
    s->p++;
    return 1;
}

/* a JSON integer >= 0 written without sign, fraction or exponent */
static int sc_uint(scan_t *s, uint64_t *v) {
    sc_ws(s);
    const char *start = s->p;
    uint64_t x = 0;
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9') {
        if (x > (UINT64_MAX - 9) / 10) return 0;
        x = x * 10 + (uint64_t)(*s->p++ - '0');
    }
    if (s->p == start || (s->p - start > 1 && *start == '0')) return 0;
    *v = x;
    return 1;
}

static int sc_done(scan_t *s) {
    sc_ws(s);
    return s->p == s->end;
}

static int hex_value(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

static void ps_send_text(conn_t *c, const char *text) {
    queue_frame(c, 1, (const unsigned char *)text, strlen(text));
}

/* EVENT [36, SUB_ID, PUB_ID, {}, ["<16 hex digits><filler>"]] after "[36,"; 0 if malformed */
static int ps_on_event(conn_t *c, scan_t *s) {
    uint64_t sub_id, pub_id;
    if (!sc_uint(s, &sub_id) || sub_id != c->sub_id || !sc_char(s, ',') || !sc_uint(s, &pub_id) ||
        pub_id == 0 || !sc_char(s, ',') || !sc_char(s, '{') || !sc_char(s, '}') ||
        !sc_char(s, ',') || !sc_char(s, '[') || !sc_char(s, '"'))
        return 0;
    /* the payload string: exactly opt_size characters, a sequence number then 'x' filler */
    if ((size_t)(s->end - s->p) < opt_size) return 0;
    int64_t seq = 0;
    for (int i = 0; i < SEQ_DIGITS; i++) {
        int h = hex_value(s->p[i]);
        if (h < 0) return 0;
        seq = seq * 16 + h;
    }
    for (size_t i = SEQ_DIGITS; i < opt_size; i++)
        if (s->p[i] != 'x') return 0;
    s->p += opt_size;
    if (!sc_char(s, '"') || !sc_char(s, ']') || !sc_char(s, ']') || !sc_done(s)) return 0;
    g_msgs++;
    g_bytes += c->msg_off;
    if (!bc_synced)
        note_error("pubsub: EVENT before the first publication");
    else
        seq_arrived(c, seq);
    return 1;
}

static void ps_on_message(conn_t *c) {
    size_t len = c->msg_off;
    if (c->msg_opcode != 1) {
        note_error("pubsub: binary message from a wamp.2.json router");
        return;
    }
    if (len > PS_MSG_MAX) {
        note_error("pubsub: unexpected message of %llu bytes", (unsigned long long)len);
        return;
    }
    scan_t s = {c->mbuf, c->mbuf + len};
    uint64_t type, a, b;
    if (!sc_char(&s, '[') || !sc_uint(&s, &type) || !sc_char(&s, ',')) goto bad;
    if (type == 36 && c->wamp == W_READY && !c->publisher) {
        if (!ps_on_event(c, &s)) goto bad;
    } else if (type == 2 && c->wamp == W_HELLO_SENT) {
        /* WELCOME [2, SESSION_ID, {details}] */
        if (!sc_uint(&s, &a) || a == 0 || !sc_char(&s, ',') || !sc_char(&s, '{')) goto bad;
        while (s.end > s.p && (s.end[-1] == ' ' || s.end[-1] == '\t' || s.end[-1] == '\n' ||
                               s.end[-1] == '\r'))
            s.end--;
        if (s.end - s.p < 2 || s.end[-1] != ']' || s.end[-2] != '}') goto bad;
        ps_welcomed++;
        if (c->publisher) {
            c->wamp = W_READY;
        } else {
            ps_send_text(c, "[32,1,{},\"" PS_TOPIC "\"]");
            c->wamp = W_SUBSCRIBING;
        }
    } else if (type == 33 && c->wamp == W_SUBSCRIBING) {
        /* SUBSCRIBED [33, 1, SUB_ID] */
        if (!sc_uint(&s, &a) || a != 1 || !sc_char(&s, ',') || !sc_uint(&s, &b) || b == 0 ||
            !sc_char(&s, ']') || !sc_done(&s))
            goto bad;
        c->sub_id = b;
        c->wamp = W_READY;
        ps_subscribed++;
    } else {
        goto bad;
    }
    return;
bad:
    note_error("pubsub: unexpected message: %.*s", (int)(len < 80 ? len : 80), c->mbuf);
}

static void on_message(conn_t *c) {
    if (opt_mode == M_PUBSUB) {
        ps_on_message(c);
        return;
    }
    g_msgs++;
    g_bytes += c->msg_off;
    if (opt_mode == M_ECHO) {
        if (c->msg_opcode != (opt_binary ? 2 : 1) || c->msg_off != opt_size)
            note_error("echo: unexpected message (opcode %d, %llu bytes)", c->msg_opcode,
                       (unsigned long long)c->msg_off);
        c->pend_data++; /* keep the number in flight constant */
    } else if (opt_mode == M_BROADCAST) {
        if (c->msg_off < SEQ_DIGITS)
            note_error("broadcast: short message");
        else
            bc_on_message(c);
    } else {
        note_error("unexpected data message in %s mode", mode_names[opt_mode]);
    }
}

static void on_data(conn_t *c, const unsigned char *p, size_t n) {
    if (opt_mode == M_ECHO) {
        if (c->msg_off + n > opt_size || memcmp(p, g_payload + c->msg_off, n) != 0)
            note_error("echo: payload mismatch");
    } else if (opt_mode == M_BROADCAST && c->msg_off < SEQ_DIGITS) {
        size_t k = SEQ_DIGITS - c->msg_off;
        if (k > n) k = n;
        memcpy(c->seq + c->msg_off, p, k);
    } else if (opt_mode == M_PUBSUB && c->msg_off < PS_MSG_MAX) {
        size_t k = PS_MSG_MAX - c->msg_off;
        if (k > n) k = n;
        memcpy(c->mbuf + c->msg_off, p, k);
    }
    c->msg_off += n;
}

/* a complete frame has been received; returns -1 if the connection must close */
static int on_frame_end(conn_t *c) {
    int op = c->opcode;
    int fin = c->fh[0] & 0x80;
    c->in_payload = 0;
    c->fhlen = 0;
    c->fhneed = 2;
    if (op == 9) { /* ping -> pong */
        queue_frame(c, 10, c->ctrl, (size_t)c->ctrl_len);
        return 0;
    }
    if (op == 10) return 0;
    if (op == 8) {
        if (c->state == S_CLOSING) {
            c->state = S_AWAIT_EOF;
            return 0;
        }
        if (c->state == S_AWAIT_EOF) return 0;
        g_server_closed++;
        note_error("server sent a close frame");
        return -1;
    }
    if (fin) on_message(c);
    return 0;
}

/* parse server frames; returns -1 on a protocol error */
static int parse_frames(conn_t *c, const unsigned char *p, size_t n) {
    while (n > 0) {
        if (!c->in_payload) {
            while (n > 0 && c->fhlen < c->fhneed) {
                c->fh[c->fhlen++] = *p++;
                n--;
                if (c->fhlen == 2) {
                    if (c->fh[1] & 0x80) {
                        note_error("server frame is masked");
                        return -1;
                    }
                    int l7 = c->fh[1] & 0x7f;
                    c->fhneed = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0);
                }
            }
            if (c->fhlen < c->fhneed) return 0;
            int l7 = c->fh[1] & 0x7f;
            uint64_t len = (uint64_t)l7;
            if (l7 == 126) len = ((uint64_t)c->fh[2] << 8) | c->fh[3];
            if (l7 == 127) {
                len = 0;
                for (int i = 0; i < 8; i++) len = (len << 8) | c->fh[2 + i];
            }
            c->opcode = c->fh[0] & 0x0f;
            if (c->fh[0] & 0x70) {
                note_error("server frame has RSV bits set");
                return -1;
            }
            if (c->opcode >= 8) {
                if (len > 125 || !(c->fh[0] & 0x80)) {
                    note_error("bad control frame");
                    return -1;
                }
                c->ctrl_len = 0;
            } else if (c->opcode != 0) {
                c->msg_opcode = c->opcode;
                c->msg_off = 0;
            }
            c->remaining = len;
            c->in_payload = 1;
            if (len == 0 && on_frame_end(c) < 0) return -1;
            continue;
        }
        size_t take = n < c->remaining ? n : (size_t)c->remaining;
        if (c->opcode >= 8) {
            memcpy(c->ctrl + c->ctrl_len, p, take);
            c->ctrl_len += (int)take;
        } else {
            on_data(c, p, take);
        }
        p += take;
        n -= take;
        c->remaining -= take;
        if (c->remaining == 0 && on_frame_end(c) < 0) return -1;
    }
    return 0;
}

static void on_open(conn_t *c) {
    g_in_progress--;
    g_opened++;
    c->state = S_OPEN;
    if (opt_mode == M_HANDSHAKE) {
        static const unsigned char code[2] = {0x03, 0xe8}; /* 1000 */
        queue_frame(c, 8, code, 2);
        c->state = S_CLOSING;
    }
    if (opt_mode == M_PUBSUB) {
        ps_send_text(c, "[1,\"" PS_REALM "\",{\"roles\":{\"subscriber\":{},\"publisher\":{}}}]");
        c->wamp = W_HELLO_SENT;
    }
}

/* whether the response head has the header `name` (any case) with exactly `value` */
static int has_header(const char *head, const char *name, const char *value) {
    size_t nl = strlen(name), vl = strlen(value);
    for (const char *line = strstr(head, "\r\n"); line; line = strstr(line, "\r\n")) {
        line += 2;
        if (strncasecmp(line, name, nl) != 0 || line[nl] != ':') continue;
        const char *v = line + nl + 1, *e = strstr(v, "\r\n");
        if (!e) e = v + strlen(v);
        while (v < e && (*v == ' ' || *v == '\t')) v++;
        while (e > v && (e[-1] == ' ' || e[-1] == '\t')) e--;
        return (size_t)(e - v) == vl && memcmp(v, value, vl) == 0;
    }
    return 0;
}

static int handle_upgrade_data(conn_t *c) {
    ssize_t r = read(c->fd, c->hbuf + c->hlen, HBUF_SIZE - 1 - c->hlen);
    if (r < 0) {
        if (errno == EAGAIN || errno == EINTR) return 0;
        fail_open(c, errno, 0);
        return -1;
    }
    if (r == 0) {
        fail_open(c, 0, 1);
        return -1;
    }
    c->hlen += (size_t)r;
    c->hbuf[c->hlen] = 0;
    char *end = strstr(c->hbuf, "\r\n\r\n");
    if (!end) {
        if (c->hlen >= HBUF_SIZE - 1) {
            g_fail_status++;
            note_error("upgrade response too long");
            conn_close(c);
            return -1;
        }
        return 0;
    }
    *end = 0;
    if (strncmp(c->hbuf, "HTTP/1.1 101", 12) != 0 || !strstr(c->hbuf, WS_ACCEPT)) {
        g_fail_status++;
        note_error("bad upgrade response: %.60s", c->hbuf);
        conn_close(c);
        return -1;
    }
    if (opt_mode == M_PUBSUB && !has_header(c->hbuf, "Sec-WebSocket-Protocol", PS_SUBPROTOCOL)) {
        g_fail_status++;
        note_error("upgrade response does not select " PS_SUBPROTOCOL);
        conn_close(c);
        return -1;
    }
    size_t hdr = (size_t)(end - c->hbuf) + 4;
    on_open(c);
    if (c->hlen > hdr && parse_frames(c, (unsigned char *)c->hbuf + hdr, c->hlen - hdr) < 0) {
        conn_close(c);
        return -1;
    }
    return 0;
}

static void lost_conn(conn_t *c, const char *why) {
    note_error("%s", why);
    conn_close(c);
}

static void handle_event(conn_t *c, uint32_t ev) {
    if (c->state == S_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            fail_open(c, err, 0);
            return;
        }
        if (!(ev & (EPOLLOUT | EPOLLIN))) return;
        c->state = S_UPGRADING;
        if (conn_flush(c) < 0) {
            fail_open(c, errno, 0);
            return;
        }
        return;
    }
    if (ev & EPOLLOUT) {
        if (conn_flush(c) < 0) {
            if (c->state == S_UPGRADING)
                fail_open(c, errno, 0);
            else
                lost_conn(c, "write failed");
            return;
        }
    }
    if (!(ev & (EPOLLIN | EPOLLHUP | EPOLLERR))) return;
    if (c->state == S_UPGRADING) {
        if (handle_upgrade_data(c) < 0) return;
    } else {
        for (int i = 0; i < 4; i++) {
            g_reads++;
            ssize_t r = read(c->fd, g_rbuf, RBUF_SIZE);
            if (r < 0) {
                if (errno == EAGAIN || errno == EINTR) break;
                lost_conn(c, c->state == S_AWAIT_EOF || c->state == S_CLOSING
                                 ? "handshake loop: reset during close"
                                 : "connection reset");
                return;
            }
            if (r == 0) {
                if (c->state == S_AWAIT_EOF) {
                    g_handshakes++;
                    conn_close(c);
                } else {
                    lost_conn(c, c->state == S_CLOSING ? "EOF before close frame"
                                                       : "server closed the connection");
                }
                return;
            }
            if (parse_frames(c, g_rbuf, (size_t)r) < 0) {
                conn_close(c);
                return;
            }
            if (r < RBUF_SIZE) break;
        }
    }
    if (c->fd >= 0 && conn_flush(c) < 0) lost_conn(c, "write failed");
}

/* ---------------- broadcast sender ---------------- */

static void bc_send(int64_t seq) {
    static unsigned char *msg;
    if (!msg) {
        msg = malloc(opt_size);
        if (!msg) die("out of memory");
        memset(msg, 'x', opt_size);
    }
    char tmp[SEQ_DIGITS + 1];
    snprintf(tmp, sizeof tmp, "%016llx", (unsigned long long)seq);
    memcpy(msg, tmp, SEQ_DIGITS);
    queue_frame(&g_conns[0], 1, msg, opt_size);
}

static void bc_pump(double now) {
    conn_t *s = &g_conns[0];
    if (s->state != S_OPEN) return;
    if (!bc_synced) {
        if (bc_sync_seq >= 0 && bc_sync_got == opt_clients) {
            bc_synced = 1;
            bc_base = bc_complete = bc_next_seq;
        } else if (bc_sync_seq < 0 || now - bc_sync_sent_at > 0.2) {
            bc_sync_seq = bc_next_seq++;
            bc_sync_got = 0;
            bc_sync_sent_at = now;
            bc_send(bc_sync_seq);
        }
    }
    if (bc_synced) {
        while (bc_next_seq - bc_complete < opt_window) bc_send(bc_next_seq++);
    }
    if (s->olen > s->ooff && conn_flush(s) < 0) lost_conn(s, "write failed");
}

/* ---------------- pubsub publisher ---------------- */

static void ps_publish(conn_t *pub, int64_t seq) {
    static char *msg, *filler;
    size_t cap = opt_size + 128;
    if (!msg) {
        msg = malloc(cap);
        filler = malloc(opt_size - SEQ_DIGITS + 1);
        if (!msg || !filler) die("out of memory");
        memset(filler, 'x', opt_size - SEQ_DIGITS);
        filler[opt_size - SEQ_DIGITS] = 0;
    }
    /* request ids start at 1 (HELLO has none; the publisher sends nothing else) */
    int n = snprintf(msg, cap, "[16,%lld,{},\"" PS_TOPIC "\",[\"%016llx%s\"]]",
                     (long long)seq + 1, (unsigned long long)seq, filler);
    if (n < 0 || (size_t)n >= cap) die("pubsub: PUBLISH message too long");
    queue_frame(pub, 1, (const unsigned char *)msg, (size_t)n);
}

/* publish once every subscriber has subscribed, keeping the window full */
static void ps_pump(void) {
    conn_t *pub = &g_conns[0];
    if (pub->state != S_OPEN || pub->wamp != W_READY) return;
    if (!bc_synced) {
        if (ps_subscribed < opt_clients) return;
        bc_synced = 1; /* bc_base = bc_complete = bc_next_seq = 0 */
    }
    while (bc_next_seq - bc_complete < opt_window) ps_publish(pub, bc_next_seq++);
    if (pub->olen > pub->ooff && conn_flush(pub) < 0) lost_conn(pub, "write failed");
}

/* ---------------- main ---------------- */

#define MAX_CPUS 64

typedef struct {
    double t, lg_cpu, srv_cpu;
    uint64_t msgs, bytes, hs, reads, writes, waits;
    int ncpus;
    unsigned long long cpu_busy[MAX_CPUS], cpu_total[MAX_CPUS]; /* from /proc/stat */
} snap_t;

/* per-core busy/total jiffies, to see whether anything else ran on our cores */
static void read_proc_stat(snap_t *s) {
    s->ncpus = 0;
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        int cpu;
        unsigned long long v[10] = {0};
        if (strncmp(line, "cpu", 3) != 0 || line[3] < '0' || line[3] > '9') continue;
        int n = sscanf(line, "cpu%d %llu %llu %llu %llu %llu %llu %llu %llu", &cpu, &v[0], &v[1],
                       &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
        if (n < 5 || cpu < 0 || cpu >= MAX_CPUS) continue;
        unsigned long long total = 0;
        for (int i = 0; i < 8; i++) total += v[i];
        s->cpu_total[cpu] = total;
        s->cpu_busy[cpu] = total - v[3] - v[4]; /* minus idle and iowait */
        if (cpu + 1 > s->ncpus) s->ncpus = cpu + 1;
    }
    fclose(f);
}

static snap_t snap(void) {
    snap_t s;
    s.t = now_s();
    s.lg_cpu = self_cpu_s();
    s.srv_cpu = server_cpu_s();
    s.msgs = g_msgs;
    s.bytes = g_bytes;
    s.hs = g_handshakes;
    s.reads = g_reads;
    s.writes = g_writes;
    s.waits = g_waits;
    read_proc_stat(&s);
    return s;
}

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen echo|broadcast|pubsub|handshake|idle --port P [--host H]\n"
            "  [--clients N] [--inflight K] [--size B] [--binary] [--window W]\n"
            "  [--concurrency C] [--warm M] [--connect-concurrency N]\n"
            "  [--warmup S] [--duration S] [--connect-timeout S] [--server-pid PID]\n");
    exit(2);
}

static void parse_args(int argc, char **argv) {
    if (argc < 2) usage();
    for (int m = 0; m < N_MODES; m++)
        if (strcmp(argv[1], mode_names[m]) == 0) opt_mode = m;
    if (opt_mode < 0) usage();
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--binary") == 0) {
            opt_binary = 1;
            continue;
        }
        if (i + 1 >= argc) usage();
        const char *v = argv[++i];
        if (strcmp(a, "--port") == 0) opt_port = atoi(v);
        else if (strcmp(a, "--host") == 0) opt_host = v;
        else if (strcmp(a, "--clients") == 0) opt_clients = atoi(v);
        else if (strcmp(a, "--inflight") == 0) opt_inflight = atoi(v);
        else if (strcmp(a, "--size") == 0) opt_size = strtoull(v, NULL, 10);
        else if (strcmp(a, "--window") == 0) opt_window = atoi(v);
        else if (strcmp(a, "--concurrency") == 0) opt_concurrency = atoi(v);
        else if (strcmp(a, "--warm") == 0) opt_warm = atoi(v);
        else if (strcmp(a, "--connect-concurrency") == 0) opt_connect_conc = atoi(v);
        else if (strcmp(a, "--warmup") == 0) opt_warmup = atof(v);
        else if (strcmp(a, "--duration") == 0) opt_duration = atof(v);
        else if (strcmp(a, "--connect-timeout") == 0) opt_connect_timeout = atof(v);
        else if (strcmp(a, "--server-pid") == 0) opt_server_pid = atol(v);
        else usage();
    }
    if (opt_port <= 0 || opt_clients < 1 || opt_inflight < 1 || opt_window < 1 ||
        opt_concurrency < 1 || opt_connect_conc < 1 || opt_warm < 0 || opt_warm > opt_clients)
        usage();
    if (opt_mode == M_BROADCAST && opt_size < SEQ_DIGITS) die("broadcast needs --size >= 16");
    if (opt_mode == M_PUBSUB && (opt_size < SEQ_DIGITS || opt_size > PS_MSG_MAX - 96))
        die("pubsub needs 16 <= --size <= 928");
}

static void wait_stdin_line(void) {
    char line[64];
    if (!fgets(line, sizeof line, stdin)) return; /* EOF also continues */
}

static void print_open_counts(void) {
    printf("\"opened\": %llu, \"attempted\": %llu, \"failed\": {\"refused\": %llu, \"reset\": %llu, "
           "\"eof\": %llu, \"bad_status\": %llu, \"timeout\": %llu, \"other\": %llu}",
           (unsigned long long)g_opened, (unsigned long long)g_attempted,
           (unsigned long long)g_fail_refused, (unsigned long long)g_fail_reset,
           (unsigned long long)g_fail_eof, (unsigned long long)g_fail_status,
           (unsigned long long)g_fail_timeout, (unsigned long long)g_fail_other);
}

static uint64_t total_failed(void) {
    return g_fail_refused + g_fail_reset + g_fail_eof + g_fail_status + g_fail_timeout +
           g_fail_other;
}

/* open connections until `target` have been attempted and settled */
static void open_until(int target, double deadline) {
    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        while (g_in_progress < (uint64_t)opt_connect_conc && g_attempted < (uint64_t)target) {
            conn_t *c = &g_conns[g_attempted];
            if (start_conn(c) < 0) c->state = S_FREE;
        }
        if (g_attempted >= (uint64_t)target && g_in_progress == 0) return;
        if (now_s() > deadline) {
            for (int i = 0; i < target; i++)
                if (g_conns[i].state == S_CONNECTING || g_conns[i].state == S_UPGRADING) {
                    g_fail_timeout++;
                    conn_close(&g_conns[i]);
                }
            note_error("timed out opening connections");
            return;
        }
        int n = epoll_wait(g_ep, evs, MAX_EVENTS, 100);
        for (int i = 0; i < n; i++) handle_event(evs[i].data.ptr, evs[i].events);
    }
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    memset(&g_addr, 0, sizeof g_addr);
    g_addr.sin_family = AF_INET;
    g_addr.sin_port = htons((uint16_t)opt_port);
    if (inet_pton(AF_INET, opt_host, &g_addr.sin_addr) != 1) die("bad --host (IPv4 only)");

    g_request_len = (size_t)snprintf(g_request, sizeof g_request,
                                     "GET / HTTP/1.1\r\n"
                                     "Host: %s:%d\r\n"
                                     "Upgrade: websocket\r\n"
                                     "Connection: Upgrade\r\n"
                                     "Sec-WebSocket-Key: " WS_KEY "\r\n"
                                     "Sec-WebSocket-Version: 13\r\n"
                                     "%s"
                                     "\r\n",
                                     opt_host, opt_port,
                                     opt_mode == M_PUBSUB
                                         ? "Sec-WebSocket-Protocol: " PS_SUBPROTOCOL "\r\n"
                                         : "");

    if (opt_mode == M_ECHO) {
        g_payload = malloc(opt_size ? opt_size : 1);
        g_dframe = malloc(opt_size + 14);
        if (!g_payload || !g_dframe) die("out of memory");
        for (size_t i = 0; i < opt_size; i++)
            g_payload[i] = opt_binary ? (unsigned char)(i * 31 + 7) : (unsigned char)('a' + i % 26);
        g_dframe_len = build_frame(g_dframe, opt_binary ? 2 : 1, g_payload, opt_size);
    }
    if (opt_mode == M_BROADCAST || opt_mode == M_PUBSUB) {
        bc_cnt = calloc((size_t)opt_window, sizeof *bc_cnt);
        if (!bc_cnt) die("out of memory");
    }

    /* pubsub: g_conns[0] is the publisher, the other opt_clients subscribe */
    g_nconns = opt_mode == M_HANDSHAKE ? opt_concurrency
               : opt_mode == M_PUBSUB  ? opt_clients + 1
                                       : opt_clients;
    g_conns = calloc((size_t)g_nconns, sizeof *g_conns);
    if (!g_conns) die("out of memory");
    for (int i = 0; i < g_nconns; i++) g_conns[i].fd = -1;
    if (opt_mode == M_PUBSUB) {
        char *mbufs = malloc((size_t)g_nconns * PS_MSG_MAX);
        if (!mbufs) die("out of memory");
        for (int i = 0; i < g_nconns; i++) g_conns[i].mbuf = mbufs + (size_t)i * PS_MSG_MAX;
        g_conns[0].publisher = 1;
    }
    g_ep = epoll_create1(EPOLL_CLOEXEC);
    if (g_ep < 0) die("epoll_create1 failed");

    double t_start = now_s();

    if (opt_mode == M_IDLE) {
        if (opt_warm > 0) {
            open_until(opt_warm, t_start + opt_connect_timeout);
            printf("{\"event\": \"warm\", ");
            print_open_counts();
            printf("}\n");
            wait_stdin_line();
        }
        double t0 = now_s();
        open_until(opt_clients, t0 + opt_connect_timeout);
        double t1 = now_s();
        printf("{\"event\": \"held\", \"open_seconds\": %.3f, ", t1 - t0);
        print_open_counts();
        printf("}\n");
        wait_stdin_line();
        /* anything the server sent meanwhile (it should send nothing) */
        struct epoll_event evs[MAX_EVENTS];
        int n = epoll_wait(g_ep, evs, MAX_EVENTS, 0);
        for (int i = 0; i < n; i++) handle_event(evs[i].data.ptr, evs[i].events);
        uint64_t still = 0;
        for (int i = 0; i < g_nconns; i++) still += g_conns[i].state == S_OPEN;
        printf("{\"mode\": \"idle\", \"clients\": %d, \"warm\": %d, \"still_open\": %llu, "
               "\"errors\": %llu, \"first_error\": \"%s\", ",
               opt_clients, opt_warm, (unsigned long long)still, (unsigned long long)g_errors,
               g_first_error);
        print_open_counts();
        printf("}\n");
        return 0;
    }

    if (opt_mode != M_HANDSHAKE) {
        open_until(g_nconns, t_start + opt_connect_timeout);
        if (total_failed() > 0 || g_opened != (uint64_t)g_nconns) {
            printf("{\"error\": \"could not open all connections: %s\", ", g_first_error);
            print_open_counts();
            printf("}\n");
            return 2;
        }
        if (opt_mode == M_ECHO) {
            for (int i = 0; i < g_nconns; i++) {
                g_conns[i].pend_data += (uint64_t)opt_inflight;
                if (conn_flush(&g_conns[i]) < 0) lost_conn(&g_conns[i], "write failed");
            }
        }
    } else {
        for (int i = 0; i < g_nconns; i++) start_conn(&g_conns[i]);
    }

    double t_conn = now_s();
    g_phase = opt_mode == M_BROADCAST || opt_mode == M_PUBSUB ? P_SYNC : P_WARM;
    double phase_t = t_conn;
    double last_progress_t = t_conn;
    uint64_t last_progress = 0;
    snap_t s0 = {0}, s1 = {0};
    struct epoll_event evs[MAX_EVENTS];

    for (;;) {
        double now = now_s();
        if (opt_mode == M_BROADCAST) bc_pump(now);
        if (opt_mode == M_PUBSUB) ps_pump();
        if (g_phase == P_SYNC && bc_synced) {
            g_phase = P_WARM;
            phase_t = now;
        }
        if (g_phase == P_SYNC && now - phase_t > 30.0) {
            if (opt_mode == M_BROADCAST) die("broadcast: clients never synced");
            printf("{\"error\": \"pubsub: not all sessions joined and subscribed in 30 s "
                   "(%d of %d welcomed, %d of %d subscribed; first error: %s)\", "
                   "\"errors\": %llu}\n",
                   ps_welcomed, g_nconns, ps_subscribed, opt_clients, g_first_error,
                   (unsigned long long)g_errors);
            return 2;
        }
        if (g_phase == P_WARM && now >= phase_t + opt_warmup) {
            s0 = snap();
            g_phase = P_MEASURE;
            now = s0.t;
        }
        if (g_phase == P_MEASURE && now >= s0.t + opt_duration) {
            s1 = snap();
            break;
        }
        uint64_t progress = g_msgs + g_handshakes + (uint64_t)(ps_welcomed + ps_subscribed);
        if (progress != last_progress) {
            last_progress = progress;
            last_progress_t = now;
        } else if (now - last_progress_t > STALL_SECONDS) {
            printf("{\"error\": \"stalled: no progress for %.0f s (first error: %s)\", "
                   "\"errors\": %llu}\n",
                   STALL_SECONDS, g_first_error, (unsigned long long)g_errors);
            return 2;
        }
        double deadline = g_phase == P_WARM      ? phase_t + opt_warmup
                          : g_phase == P_MEASURE ? s0.t + opt_duration
                                                 : now + 0.05;
        int timeout_ms = (int)((deadline - now) * 1000.0) + 1;
        if (timeout_ms > 50) timeout_ms = 50;
        if (timeout_ms < 0) timeout_ms = 0;
        g_waits++;
        int n = epoll_wait(g_ep, evs, MAX_EVENTS, timeout_ms);
        for (int i = 0; i < n; i++) handle_event(evs[i].data.ptr, evs[i].events);
        if (opt_mode == M_HANDSHAKE) {
            for (int i = 0; i < g_nconns; i++)
                if (g_conns[i].state == S_FREE) start_conn(&g_conns[i]);
        }
    }

    double wall = s1.t - s0.t;
    double lg_cpu = s1.lg_cpu - s0.lg_cpu;
    uint64_t count = opt_mode == M_HANDSHAKE ? s1.hs - s0.hs : s1.msgs - s0.msgs;
    printf("{\"mode\": \"%s\", \"clients\": %d, \"connections\": %d, \"inflight\": %d, \"size\": %zu, \"binary\": %s, "
           "\"window\": %d, \"concurrency\": %d, \"warmup_s\": %.3f, \"elapsed_s\": %.6f, "
           "\"count\": %llu, \"bytes\": %llu, \"lg_cpu_s\": %.6f, \"lg_util\": %.4f, ",
           mode_names[opt_mode], opt_clients, g_nconns, opt_inflight, opt_size,
           opt_binary ? "true" : "false", opt_window, opt_concurrency, opt_warmup, wall,
           (unsigned long long)count, (unsigned long long)(s1.bytes - s0.bytes), lg_cpu,
           lg_cpu / wall);
    if (s0.srv_cpu >= 0 && s1.srv_cpu >= 0)
        printf("\"server_cpu_s\": %.6f, \"server_util\": %.4f, ", s1.srv_cpu - s0.srv_cpu,
               (s1.srv_cpu - s0.srv_cpu) / wall);
    else
        printf("\"server_cpu_s\": null, \"server_util\": null, ");
    printf("\"lg_syscalls\": {\"read\": %llu, \"write\": %llu, \"epoll_wait\": %llu}, ",
           (unsigned long long)(s1.reads - s0.reads), (unsigned long long)(s1.writes - s0.writes),
           (unsigned long long)(s1.waits - s0.waits));
    printf("\"loadgen_core\": %d, \"core_busy\": [", sched_getcpu());
    for (int i = 0; i < s1.ncpus && i < s0.ncpus; i++) {
        unsigned long long dt = s1.cpu_total[i] - s0.cpu_total[i];
        printf("%s%.4f", i ? ", " : "",
               dt ? (double)(s1.cpu_busy[i] - s0.cpu_busy[i]) / (double)dt : 0.0);
    }
    printf("], ");
    printf("\"errors\": %llu, \"server_closed\": %llu, \"first_error\": \"%s\", ",
           (unsigned long long)g_errors, (unsigned long long)g_server_closed, g_first_error);
    print_open_counts();
    printf("}\n");
    return 0;
}
