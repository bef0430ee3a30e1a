/* A cheap benchmark target on 127.0.0.1: one epoll loop in C, so that its CPU does not hide
 * the exporter's (the Python simulator and the Python latency proxy needed about as much CPU
 * per round as the exporter on the same 2 cores). benchmarks/run.py builds and starts it.
 *
 *   target LATENCY_MS CERT.pem KEY.pem < SPEC
 *
 * SPEC has one listener a line: "tcp", "tls" or "fwd PORT". Each gets an ephemeral port on
 * 127.0.0.1; one line "ready listeners=N ports=P1,P2,..." gives them in SPEC's order.
 *
 * - tcp: the license manager and vendor daemon ports: accept, read until the client closes
 *   (as the simulator's network ports do);
 * - tls: the Web Services port: a TLS server (the certificate given), answering one HTTP
 *   request with the simulator's page;
 * - fwd: a delay line to 127.0.0.1:PORT (the simulated WinRM servers), answers sent back at
 *   once.
 *
 * Latency as benchmarks/latency_proxy.py injects it: every byte from a client of a tls or fwd
 * listener is handled LATENCY_MS after it arrived (one FIFO: the delay is the same for all, so
 * arrival order is due order). A TLS handshake thus takes L longer, every WinRM request waits
 * L; a plain TCP connect completes in the kernel and is not delayed (netem, which could, is not
 * in this kernel). */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum kind { K_TCP, K_TLS, K_FWD };
enum role { R_LISTEN, R_CLIENT, R_UPSTREAM };

struct buf { char *data; size_t len, cap; };

struct conn;
struct end {                 /* what an epoll registration points at */
    enum role role;
    int fd;
    struct conn *conn;       /* NULL for a listener */
    struct buf out;          /* bytes waiting for the socket */
    int want_out;
};

struct listener { struct end end; enum kind kind; int upstream; };

struct conn {
    enum kind kind;
    struct end client, up;
    SSL *ssl;
    BIO *rbio, *wbio;
    int handshaken, answered, closed, up_eof, up_shut, pending;
    struct conn *next_dead;
};

struct item { long long due; struct conn *conn; char *data; size_t len; struct item *next; };

static const char PAGE[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n"
    "Content-Length: 64\r\n\r\n"
    "<html><body>Citrix Licensing Manager (SIMULATED)</body></html>\n\n";

static int ep;
static long long latency_ms;
static SSL_CTX *ctx;
static struct item *head, *tail;
static struct conn *dead;  /* closed, freed once no event of this batch can point at them */

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void die(const char *what) { perror(what); exit(1); }

static void *xmalloc(size_t n) { void *p = malloc(n); if (!p) die("malloc"); return p; }

static void buf_add(struct buf *b, const char *data, size_t len) {
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + len) cap *= 2;
        b->data = realloc(b->data, cap);
        if (!b->data) die("realloc");
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
}

static void watch(struct end *e, int op) {
    struct epoll_event ev = {.events = EPOLLIN | (e->want_out ? EPOLLOUT : 0), .data.ptr = e};
    if (epoll_ctl(ep, op, e->fd, &ev) < 0 && op != EPOLL_CTL_MOD) die("epoll_ctl");
}

static void close_conn(struct conn *c) {
    if (c->closed) return;
    c->closed = 1;
    if (c->client.fd >= 0) close(c->client.fd);
    if (c->up.fd >= 0) close(c->up.fd);
    c->client.fd = c->up.fd = -1;
    if (c->ssl) SSL_free(c->ssl);  /* frees both BIOs */
    c->ssl = NULL;
    free(c->client.out.data);
    free(c->up.out.data);
    c->client.out.data = c->up.out.data = NULL;
    c->next_dead = dead;
    dead = c;
}

/* Write what is buffered; 0 when all is out, 1 when the socket is full, -1 on error. */
static int flush(struct end *e) {
    while (e->out.len > 0) {
        ssize_t n = send(e->fd, e->out.data, e->out.len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            if (errno == EINTR) continue;
            return -1;
        }
        memmove(e->out.data, e->out.data + n, e->out.len - (size_t)n);
        e->out.len -= (size_t)n;
    }
    int want = e->out.len > 0;
    if (want != e->want_out) { e->want_out = want; watch(e, EPOLL_CTL_MOD); }
    return want;
}

static void send_to(struct conn *c, struct end *e, const char *data, size_t len) {
    buf_add(&e->out, data, len);
    if (flush(e) < 0) close_conn(c);
}

/* The TLS engine's output (handshake records, the answer) goes to the client at once. */
static void tls_output(struct conn *c) {
    char chunk[16384];
    int n;
    while (!c->closed && (n = BIO_read(c->wbio, chunk, sizeof chunk)) > 0)
        send_to(c, &c->client, chunk, (size_t)n);
}

static void tls_input(struct conn *c, const char *data, size_t len) {
    BIO_write(c->rbio, data, (int)len);
    if (!c->handshaken) {
        int rc = SSL_do_handshake(c->ssl);
        if (rc == 1) c->handshaken = 1;
        else if (SSL_get_error(c->ssl, rc) != SSL_ERROR_WANT_READ) {
            ERR_clear_error();
            tls_output(c);  /* the alert */
            close_conn(c);
            return;
        }
    }
    if (c->handshaken && !c->answered) {
        char request[4096];
        int n = SSL_read(c->ssl, request, sizeof request);
        if (n > 0) {
            c->answered = 1;
            SSL_write(c->ssl, PAGE, (int)(sizeof PAGE - 1));
        } else {
            ERR_clear_error();
        }
    }
    tls_output(c);
}

static void delay(struct conn *c, const char *data, size_t len) {
    struct item *it = xmalloc(sizeof *it);
    it->due = now_ms() + latency_ms;
    it->conn = c;
    it->len = len;
    it->data = len ? xmalloc(len) : NULL;
    if (len) memcpy(it->data, data, len);
    it->next = NULL;
    c->pending++;
    if (tail) tail->next = it; else head = it;
    tail = it;
}

static void deliver(struct item *it) {
    struct conn *c = it->conn;
    c->pending--;
    if (c->closed) return;
    if (it->len == 0) {  /* the client's end of stream */
        if (c->kind != K_FWD) close_conn(c);
        else if (c->up.out.len == 0) shutdown(c->up.fd, SHUT_WR);
        else c->up_shut = 1;
        return;
    }
    if (c->kind == K_TLS) tls_input(c, it->data, it->len);
    else send_to(c, &c->up, it->data, it->len);
}

static void accept_all(struct listener *l) {
    for (;;) {
        int fd = accept4(l->end.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR) continue;
            return;  /* EAGAIN, or out of descriptors: try again on the next event */
        }
        struct conn *c = calloc(1, sizeof *c);
        if (!c) die("calloc");
        c->kind = l->kind;
        c->client = (struct end){.role = R_CLIENT, .fd = fd, .conn = c};
        c->up = (struct end){.role = R_UPSTREAM, .fd = -1, .conn = c};
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (l->kind == K_TLS) {
            c->ssl = SSL_new(ctx);
            c->rbio = BIO_new(BIO_s_mem());
            c->wbio = BIO_new(BIO_s_mem());
            SSL_set_bio(c->ssl, c->rbio, c->wbio);
            SSL_set_accept_state(c->ssl);
        } else if (l->kind == K_FWD) {
            int up = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            struct sockaddr_in addr = {.sin_family = AF_INET,
                                       .sin_port = htons((unsigned short)l->upstream),
                                       .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
            if (up < 0 || (connect(up, (struct sockaddr *)&addr, sizeof addr) < 0
                           && errno != EINPROGRESS)) {
                if (up >= 0) close(up);
                close(fd);
                free(c);
                continue;
            }
            setsockopt(up, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            c->up.fd = up;
            watch(&c->up, EPOLL_CTL_ADD);
        }
        watch(&c->client, EPOLL_CTL_ADD);
    }
}

static void readable(struct end *e) {
    struct conn *c = e->conn;
    char chunk[65536];
    for (;;) {
        ssize_t n = recv(e->fd, chunk, sizeof chunk, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            n = 0;  /* a reset: like an end of stream */
        }
        if (e->role == R_UPSTREAM) {
            if (n == 0) { c->up_eof = 1; if (c->client.out.len == 0) close_conn(c); return; }
            send_to(c, &c->client, chunk, (size_t)n);
        } else if (c->kind == K_TCP) {
            if (n == 0) { close_conn(c); return; }
        } else {
            delay(c, chunk, (size_t)n);
            if (n == 0) {  /* nothing more to read: stop watching, wait for the delay line */
                epoll_ctl(ep, EPOLL_CTL_DEL, e->fd, NULL);
                return;
            }
        }
        if (c->closed) return;
    }
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: target LATENCY_MS CERT KEY < SPEC\n"); return 2; }
    latency_ms = atoll(argv[1]);
    signal(SIGPIPE, SIG_IGN);
    ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx || SSL_CTX_use_certificate_chain_file(ctx, argv[2]) != 1
        || SSL_CTX_use_PrivateKey_file(ctx, argv[3], SSL_FILETYPE_PEM) != 1) {
        ERR_print_errors_fp(stderr);
        return 1;
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    char line[256];
    int count = 0;
    struct buf ports = {0};
    while (fgets(line, sizeof line, stdin)) {
        char word[16] = "";
        int upstream = 0;
        if (sscanf(line, "%15s %d", word, &upstream) < 1) continue;
        struct listener *l = calloc(1, sizeof *l);
        if (!l) die("calloc");
        l->kind = strcmp(word, "tls") == 0 ? K_TLS : strcmp(word, "fwd") == 0 ? K_FWD : K_TCP;
        l->upstream = upstream;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t size = sizeof addr;
        if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, 4096) < 0
            || getsockname(fd, (struct sockaddr *)&addr, &size) < 0)
            die("listen");
        l->end = (struct end){.role = R_LISTEN, .fd = fd};
        watch(&l->end, EPOLL_CTL_ADD);
        char port[16];
        int len = snprintf(port, sizeof port, "%s%d", count ? "," : "", ntohs(addr.sin_port));
        buf_add(&ports, port, (size_t)len);
        count++;
    }
    buf_add(&ports, "", 1);
    printf("ready listeners=%d ports=%s\n", count, ports.data);
    fflush(stdout);
    struct epoll_event events[256];
    for (;;) {
        int timeout = -1;
        if (head) {
            long long wait = head->due - now_ms();
            timeout = wait > 0 ? (int)wait : 0;
        }
        int n = epoll_wait(ep, events, 256, timeout);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < n; i++) {
            struct end *e = events[i].data.ptr;
            if (e->role == R_LISTEN) { accept_all((struct listener *)e); continue; }
            struct conn *c = e->conn;
            if (c->closed || e->fd < 0) continue;
            if (events[i].events & EPOLLOUT) {
                if (flush(e) < 0) { close_conn(c); continue; }
                if (e->role == R_CLIENT && c->up_eof && e->out.len == 0) {
                    close_conn(c);
                    continue;
                }
                if (e->role == R_UPSTREAM && c->up_shut && e->out.len == 0) shutdown(e->fd, SHUT_WR);
            }
            if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) readable(e);
        }
        long long now = now_ms();
        while (head && head->due <= now) {
            struct item *it = head;
            head = it->next;
            if (!head) tail = NULL;
            deliver(it);
            free(it->data);
            free(it);
        }
        struct conn **link = &dead;
        while (*link) {
            struct conn *c = *link;
            if (c->pending == 0) { *link = c->next_dead; free(c); }
            else link = &c->next_dead;
        }
    }
}
