/*
 * svg: DOT -> SVG through the real Graphviz `dot` program, run as a child process with
 * three pipes and no shell.
 *
 * A child that writes while it reads (dot prints warnings, or renders each graph of a
 * multi-graph input as soon as it is parsed) deadlocks a parent that first writes all
 * input and then reads; so we write and read in one poll() loop. The child must never
 * outlive the call: it is killed after the deadline and always reaped, and a child that
 * stops reading must not kill us with SIGPIPE.
 */
#include "visualize/visualize_int.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

enum {
    SVG_TIMEOUT_MS = 10000,
    IO_CHUNK = 65536,
    ERR_KEEP = 4096, /* bytes of the child's stderr we keep for the message */
};
#define SVG_MAX_OUT ((size_t)64 << 20)

/* One run of a child: its pipes (our ends, -1 when closed) and what it said. */
typedef struct {
    pid_t pid;
    int in_fd, out_fd, err_fd;
    char err[ERR_KEEP + 1];
    size_t err_len;
    bool epipe;     /* the child closed its stdin before taking all input */
    bool timed_out; /* deadline passed; the child was killed */
    bool too_big;   /* more output than max_out; the child was killed */
    bool io_error;
} run_t;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

static void set_msg(char *errbuf, size_t errlen, const char *msg)
{
    if (errbuf != NULL && errlen > 0) {
        snprintf(errbuf, errlen, "%s", msg);
    }
}

/* Starts argv with stdin/stdout/stderr on fresh pipes. Returns 0 or an errno value. */
static int spawn_child(run_t *r, const char *const argv[])
{
    int inp[2] = {-1, -1}, outp[2] = {-1, -1}, errp[2] = {-1, -1};
    int rc = 0;
    if (pipe2(inp, O_CLOEXEC) != 0 || pipe2(outp, O_CLOEXEC) != 0 || pipe2(errp, O_CLOEXEC) != 0) {
        rc = errno;
        goto fail;
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_adddup2(&fa, inp[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&fa, outp[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&fa, errp[1], STDERR_FILENO);
    /* The child gets a clean signal state whatever the daemon blocks or ignores. */
    sigset_t none, pipe_only;
    sigemptyset(&none);
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &pipe_only);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    rc = posix_spawnp(&r->pid, argv[0], &fa, &attr, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
        goto fail;
    }
    close(inp[0]);
    close(outp[1]);
    close(errp[1]);
    r->in_fd = inp[1];
    r->out_fd = outp[0];
    r->err_fd = errp[0];
    fcntl(r->in_fd, F_SETFL, O_NONBLOCK);
    fcntl(r->out_fd, F_SETFL, O_NONBLOCK);
    fcntl(r->err_fd, F_SETFL, O_NONBLOCK);
    return 0;
fail:
    for (int i = 0; i < 2; i++) {
        close_fd(&inp[i]);
        close_fd(&outp[i]);
        close_fd(&errp[i]);
    }
    return rc;
}

/* Writes what the pipe takes now. */
static void pump_in(run_t *r, const char *in, size_t len, size_t *off)
{
    size_t n = len - *off < IO_CHUNK ? len - *off : IO_CHUNK;
    ssize_t w = write(r->in_fd, in + *off, n);
    if (w > 0) {
        *off += (size_t)w;
    } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
        /* EPIPE: the child exited or closed stdin; its status and stderr tell why. */
        r->epipe = errno == EPIPE;
        r->io_error = errno != EPIPE;
        close_fd(&r->in_fd);
    }
    if (*off == len) {
        close_fd(&r->in_fd);
    }
}

/* Reads what is there from stdout (into out) or stderr (first ERR_KEEP bytes). */
static void pump_out(run_t *r, int *fd, sg_buf_t *out, size_t base, size_t max_out)
{
    char chunk[IO_CHUNK];
    ssize_t n = read(*fd, chunk, sizeof chunk);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        return;
    }
    if (n <= 0) {
        r->io_error |= n < 0;
        close_fd(fd);
        return;
    }
    if (fd == &r->err_fd) {
        size_t keep = ERR_KEEP - r->err_len < (size_t)n ? ERR_KEEP - r->err_len : (size_t)n;
        memcpy(r->err + r->err_len, chunk, keep);
        r->err_len += keep;
        return;
    }
    sg_buf_append(out, chunk, (size_t)n);
    if (out->len - base > max_out) {
        r->too_big = true;
    }
}

/* Feeds and drains the child until its pipes close, the deadline passes or output is
 * too big. */
static void io_loop(run_t *r, const char *in, size_t len, sg_buf_t *out, size_t base,
                    size_t max_out, int64_t deadline)
{
    size_t off = 0;
    if (len == 0) {
        close_fd(&r->in_fd);
    }
    while ((r->in_fd >= 0 || r->out_fd >= 0 || r->err_fd >= 0) && !r->too_big) {
        struct pollfd p[3];
        int *fds[3];
        nfds_t n = 0;
        if (r->in_fd >= 0) {
            p[n] = (struct pollfd){.fd = r->in_fd, .events = POLLOUT};
            fds[n++] = &r->in_fd;
        }
        if (r->out_fd >= 0) {
            p[n] = (struct pollfd){.fd = r->out_fd, .events = POLLIN};
            fds[n++] = &r->out_fd;
        }
        if (r->err_fd >= 0) {
            p[n] = (struct pollfd){.fd = r->err_fd, .events = POLLIN};
            fds[n++] = &r->err_fd;
        }
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            r->timed_out = true;
            return;
        }
        int rc = poll(p, n, (int)left);
        if (rc < 0 && errno != EINTR) {
            r->io_error = true;
            return;
        }
        for (nfds_t i = 0; rc > 0 && i < n; i++) {
            if (p[i].revents == 0) {
                continue;
            }
            if (fds[i] == &r->in_fd) {
                pump_in(r, in, len, &off);
            } else {
                pump_out(r, fds[i], out, base, max_out);
            }
        }
    }
}

/* Waits for the child until the deadline, then kills it; always reaps it. */
static int reap(run_t *r, bool kill_now, int64_t deadline)
{
    int status = 0;
    if (kill_now) {
        kill(r->pid, SIGKILL);
    }
    for (;;) {
        pid_t w = waitpid(r->pid, &status, kill_now ? 0 : WNOHANG);
        if (w == r->pid) {
            return status;
        }
        if (w < 0 && errno != EINTR) {
            return status; /* someone else reaped it; nothing left to wait for */
        }
        if (w == 0 && now_ms() >= deadline) {
            r->timed_out = true;
            kill(r->pid, SIGKILL);
            kill_now = true;
        } else if (w == 0) {
            struct timespec ts = {0, 2 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
}

/* The first "Error:" line of the child's stderr, else its first line. */
static void first_error_line(const run_t *r, char *errbuf, size_t errlen)
{
    const char *text = r->err;
    const char *err = strstr(text, "Error");
    const char *start = err != NULL ? err : text;
    while (start > text && start[-1] != '\n') {
        start--;
    }
    size_t n = strcspn(start, "\r\n");
    if (errbuf != NULL && errlen > 0) {
        snprintf(errbuf, errlen, "%.*s", (int)n, start);
    }
}

/* Turns how the run went into a code and message. */
static sg_err_t verdict(const run_t *r, int status, const char *prog, char *errbuf, size_t errlen)
{
    char msg[256];
    if (r->timed_out) {
        snprintf(msg, sizeof msg, "%s: killed after running too long", prog);
        set_msg(errbuf, errlen, msg);
        return SG_ERR_LIMIT;
    }
    if (r->too_big) {
        snprintf(msg, sizeof msg, "%s: killed for writing too much output", prog);
        set_msg(errbuf, errlen, msg);
        return SG_ERR_LIMIT;
    }
    if (WIFSIGNALED(status)) {
        snprintf(msg, sizeof msg, "%s: died from signal %d", prog, WTERMSIG(status));
        set_msg(errbuf, errlen, msg);
        return SG_ERR_INTERNAL;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127 && r->err_len == 0) {
        /* posix_spawnp normally reports a failed exec itself; where it cannot (under
         * valgrind, or implementations that fork), the child exits 127 silently. */
        snprintf(msg, sizeof msg, "%s: could not be started (not installed?)", prog);
        set_msg(errbuf, errlen, msg);
        return SG_ERR_NOT_FOUND;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
        first_error_line(r, errbuf, errlen);
        if (errbuf != NULL && errlen > 0 && errbuf[0] == '\0') {
            snprintf(msg, sizeof msg, "%s: exited with status %d", prog, WEXITSTATUS(status));
            set_msg(errbuf, errlen, msg);
        }
        return SG_ERR_INVALID;
    }
    if (r->io_error) {
        snprintf(msg, sizeof msg, "%s: pipe error", prog);
        set_msg(errbuf, errlen, msg);
        return SG_ERR_IO;
    }
    set_msg(errbuf, errlen, "");
    return SG_OK;
}

sg_err_t viz__run(const char *const argv[], const char *in, size_t len, int timeout_ms,
                  size_t max_out, sg_buf_t *out, char *errbuf, size_t errlen)
{
    run_t r = {.pid = -1, .in_fd = -1, .out_fd = -1, .err_fd = -1};
    size_t base = out->len;
    int64_t deadline = now_ms() + timeout_ms;
    set_msg(errbuf, errlen, "");

    /* A child that stops reading makes write() raise SIGPIPE, which would kill the
     * daemon: block it in this thread and swallow the one our pipe raised. */
    sigset_t pipe_only, old, pending;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
    sigpending(&pending);
    bool was_pending = sigismember(&pending, SIGPIPE) == 1;

    int rc = spawn_child(&r, argv);
    sg_err_t result;
    if (rc != 0) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s: %s", argv[0], strerror(rc));
        set_msg(errbuf, errlen, msg);
        result = rc == ENOENT || rc == EACCES || rc == ENOTDIR ? SG_ERR_NOT_FOUND : SG_ERR_IO;
    } else {
        io_loop(&r, in, len, out, base, max_out, deadline);
        close_fd(&r.in_fd);
        close_fd(&r.out_fd);
        close_fd(&r.err_fd);
        int status = reap(&r, r.timed_out || r.too_big || r.io_error, deadline);
        result = verdict(&r, status, argv[0], errbuf, errlen);
        if (result == SG_OK && out->oom) {
            result = SG_ERR_NOMEM;
            set_msg(errbuf, errlen, sg_strerror(result));
        }
    }
    if (r.epipe && !was_pending) {
        struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_only, NULL, &zero) < 0 && errno == EINTR) {
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (result != SG_OK && !out->oom) {
        out->len = base;
        if (out->data != NULL) {
            out->data[base] = '\0';
        }
    }
    return result;
}

sg_err_t sg_viz_svg(const char *dot, size_t len, sg_buf_t *out, char *errbuf, size_t errlen)
{
    static const char *const argv[] = {"dot", "-Tsvg", NULL};
    return viz__run(argv, dot, len, SVG_TIMEOUT_MS, SVG_MAX_OUT, out, errbuf, errlen);
}
