/* ---- the runtime: what rmapcheck's live runner does, in C ----------------
 *
 * One worker process per scenario process performs its system calls; this
 * process (the controller) sends each step to its worker over a socketpair,
 * then observes every live worker through procfs as the live runner does:
 * /proc/PID/maps (the private VMAs meeting the arena), /proc/PID/pagemap and
 * /proc/kpageflags (which pages share a frame, the zero page, KSM pages),
 * with KSM in play /sys/kernel/mm/ksm and /proc/PID/ksm_stat. Frames are
 * numbered in order of first appearance over the processes in name order and
 * their pages in address order, so two pages get one number exactly when they
 * share a frame; -1 is the zero page.
 *
 * The controller is a child subreaper, so every worker is reaped; every wait
 * is bounded (RC_TIMEOUT seconds); the KSM knobs it changes are saved first
 * (also to RC_SAVE_FILE, in the format rmapcheck reads back after a crash)
 * and restored on exit, on error and on SIGINT/SIGTERM.
 */
#define _GNU_SOURCE
#pragma GCC diagnostic ignored "-Wunused-function"
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MADV_NOHUGEPAGE
#define MADV_NOHUGEPAGE 15
#endif
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif
#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif
#ifndef PR_SET_MEMORY_MERGE
#define PR_SET_MEMORY_MERGE 67
#define PR_GET_MEMORY_MERGE 68
#endif
#ifndef PR_SET_CHILD_SUBREAPER
#define PR_SET_CHILD_SUBREAPER 36
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_process_madvise
#define SYS_process_madvise 440
#endif
#define RC_MADV_UNMERGEABLE 13
#define RC_MADV_MERGEABLE 12
#define RC_MPOL_MF_MOVE_ALL 4

#define RC_PAGE 4096ULL
#define RC_TIMEOUT 5.0
#define RC_LOCK_TIMEOUT 120.0
#define RC_KSM_DIR "/sys/kernel/mm/ksm"
#define RC_SAVE_FILE "/run/rmapcheck-ksm-saved.json"
#define RC_LOCK_FILE "/run/rmapcheck-ksm.lock"
#define RC_LOCK_FD_ENV "RMAPCHECK_KSM_LOCK_FD"
/* A merge-any worker's stand-in page, 4 GiB below the arena (as the live runner). */
#define RC_STANDIN (RC_ARENA_BASE - (1ULL << 32))
#define RC_TASK_SIZE 0x7FFFFFFFF000ULL
#define RC_SLEEP_BASE 600000
#define PM_PRESENT (1ULL << 63)
#define PM_SWAP (1ULL << 62)
#define PM_PFRAME_MASK ((1ULL << 55) - 1)
#define KPF_KSM 21
#define KPF_ZERO_PAGE 24

static void run_steps(void);

/* -- errors and time -------------------------------------------------------- */

static char rc_res[256];            /* the result of the step just performed */
static int rc_unexpected;           /* steps whose result was not the expected one */

static double rc_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void rc_sleep(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (time_t)s) * 1e9) };
	nanosleep(&ts, NULL);
}

static const char *rc_errname(int e)
{
	static char buf[32];
	if (e > 0 && e < (int)(sizeof(rc_errnames) / sizeof(rc_errnames[0])) && rc_errnames[e])
		return rc_errnames[e];
	snprintf(buf, sizeof(buf), "E%d", e);
	return buf;
}

static void rc_cleanup(void);

static void rc_die(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "repro: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	rc_cleanup();
	exit(2);
}

/* -- the workers -------------------------------------------------------------- */

enum { C_MMAP, C_MUNMAP, C_MPROTECT, C_MADVISE, C_MREMAP, C_READ, C_WRITE, C_POKE, C_FORK, C_EXIT,
       C_PRCTL_MERGE, C_PRCTL_GET, C_UNMERGE_OUTSIDE, C_HELLO };
enum { RR_OK, RR_ERRNO, RR_SIGSEGV, RR_VALUES, RR_VALUE, RR_ERROR, RR_HELLO };

struct rc_cmd {
	int cmd, child, prot, flags, thp, advice, npages;
	uint64_t addr, len, new_len, new_addr, value;
};

struct rc_reply {
	int kind, err, n, pid;
	long ret;
	char text[200];
};

struct rc_proc {
	const char *name;
	int fd;      /* the controller's end of the channel */
	int wfd;     /* the worker's end, inherited by every worker */
	pid_t pid;
	int pidfd;
	int alive, started, merge_any;
};

static struct rc_proc rc_procs[RC_CHANNELS];
static uint64_t *rc_values;         /* MAP_SHARED: the values a read returns */
static pid_t rc_racers[RC_RACERS + 1];
static int rc_is_worker;

static struct rc_reply rc_reply_errno(int kind, int err)
{
	struct rc_reply r;
	memset(&r, 0, sizeof(r));
	r.kind = kind;
	r.err = err;
	return r;
}

/* Whether a VMA of this process covers [addr, addr+8) with permission need
 * ('r' or 'w'), read from /proc/self/maps before every access: a forbidden
 * access is answered SIGSEGV without touching the page, as the live worker does. */
static int rc_accessible(uint64_t addr, char need)
{
	char line[512];
	int ok = 0;
	FILE *f = fopen("/proc/self/maps", "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long lo, hi;
		char perms[8];
		if (sscanf(line, "%llx-%llx %7s", &lo, &hi, perms) != 3)
			continue;
		if (lo <= addr && addr + 8 <= hi) {
			ok = perms[need == 'r' ? 0 : 1] == need;
			break;
		}
		if (lo > addr)
			break;
	}
	fclose(f);
	return ok;
}

/* MADV_UNMERGEABLE on everything outside the stand-in page and the arena (and
 * a tebibyte after it): a merge-any worker's own memory stays out of KSM's
 * counters. ENOMEM (holes) is expected; the advice was still applied. */
static int rc_unmerge_outside(void)
{
	uint64_t keep[2][2] = { { RC_STANDIN, RC_STANDIN + RC_PAGE }, { RC_ARENA_BASE, RC_ARENA_BASE + (1ULL << 40) } };
	uint64_t start = 0;
	for (int i = 0; i <= 2; i++) {
		uint64_t end = i < 2 ? keep[i][0] : RC_TASK_SIZE;
		if (end > start && madvise((void *)start, end - start, RC_MADV_UNMERGEABLE) == -1 && errno != ENOMEM)
			return errno;
		if (i < 2)
			start = keep[i][1];
	}
	return 0;
}

static struct rc_reply rc_perform(struct rc_cmd *c)
{
	struct rc_reply r = rc_reply_errno(RR_OK, 0);
	void *addr = (void *)c->addr;
	switch (c->cmd) {
	case C_MMAP: {
		void *got = mmap(addr, c->len, c->prot, MAP_PRIVATE | MAP_ANONYMOUS | c->flags, -1, 0);
		if (got == MAP_FAILED)
			return rc_reply_errno(RR_ERRNO, errno);
		if (got != addr) {
			munmap(got, c->len);
			r.kind = RR_ERROR;
			snprintf(r.text, sizeof(r.text), "mmap placed the mapping at %p, not at %p", got, addr);
			return r;
		}
		/* By default keep transparent huge pages out: one frame per page. */
		if (c->thp >= 0 && madvise(addr, c->len, c->thp) == -1) {
			r.kind = RR_ERROR;
			snprintf(r.text, sizeof(r.text), "madvise(%d) after mmap failed: %s", c->thp, rc_errname(errno));
		}
		return r;
	}
	case C_MUNMAP:
		return munmap(addr, c->len) ? rc_reply_errno(RR_ERRNO, errno) : r;
	case C_MPROTECT:
		return mprotect(addr, c->len, c->prot) ? rc_reply_errno(RR_ERRNO, errno) : r;
	case C_MADVISE:
		return madvise(addr, c->len, c->advice) ? rc_reply_errno(RR_ERRNO, errno) : r;
	case C_MREMAP:
		/* Through syscall(2): glibc's mremap() passes new_address only with MREMAP_FIXED. */
		if (syscall(SYS_mremap, c->addr, c->len, c->new_len, c->flags, c->new_addr) == -1)
			return rc_reply_errno(RR_ERRNO, errno);
		return r;
	case C_READ:
		for (int i = 0; i < c->npages; i++) {
			uint64_t a = c->addr + i * RC_PAGE;
			if (!rc_accessible(a, 'r'))
				return rc_reply_errno(RR_SIGSEGV, 0);
			rc_values[i] = *(volatile uint64_t *)a;
		}
		r.kind = RR_VALUES;
		r.n = c->npages;
		return r;
	case C_WRITE:
		for (int i = 0; i < c->npages; i++) {
			uint64_t a = c->addr + i * RC_PAGE;
			if (!rc_accessible(a, 'w'))
				return rc_reply_errno(RR_SIGSEGV, 0);
			*(volatile uint64_t *)a = c->value;
		}
		return r;
	case C_POKE: {
		/* pwrite() to /proc/self/mem: mem_rw() with FOLL_FORCE | FOLL_WRITE. */
		int fd = open("/proc/self/mem", O_RDWR);
		if (fd < 0)
			return rc_reply_errno(RR_ERRNO, errno);
		for (int i = 0; i < c->npages; i++) {
			if (pwrite(fd, &c->value, 8, (off_t)(c->addr + i * RC_PAGE)) != 8) {
				int e = errno;
				close(fd);
				return rc_reply_errno(RR_ERRNO, e);
			}
		}
		close(fd);
		return r;
	}
	case C_PRCTL_MERGE:
		if (c->value) {
			/* A merge-any process needs one mergeable VMA of its own outside
			 * the arena, or ksmd drops it from its list: the stand-in page. */
			void *got = mmap((void *)RC_STANDIN, RC_PAGE, PROT_READ | PROT_WRITE,
					 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
			if (got == MAP_FAILED && errno != EEXIST) {
				r.kind = RR_ERROR;
				snprintf(r.text, sizeof(r.text), "mapping the stand-in page failed: %s", rc_errname(errno));
				return r;
			}
		}
		if (prctl(PR_SET_MEMORY_MERGE, (unsigned long)c->value, 0, 0, 0) == -1)
			return rc_reply_errno(RR_ERRNO, errno);
		if (c->value && (r.err = rc_unmerge_outside())) {
			r.kind = RR_ERROR;
			snprintf(r.text, sizeof(r.text), "MADV_UNMERGEABLE outside the arena failed: %s", rc_errname(r.err));
		}
		return r;
	case C_PRCTL_GET: {
		long v = prctl(PR_GET_MEMORY_MERGE, 0, 0, 0, 0);
		if (v == -1)
			return rc_reply_errno(RR_ERRNO, errno);
		r.kind = RR_VALUE;
		r.ret = v;
		return r;
	}
	case C_UNMERGE_OUTSIDE:
		if ((r.err = rc_unmerge_outside())) {
			r.kind = RR_ERROR;
			snprintf(r.text, sizeof(r.text), "MADV_UNMERGEABLE outside the arena failed: %s", rc_errname(r.err));
		}
		return r;
	}
	r.kind = RR_ERROR;
	snprintf(r.text, sizeof(r.text), "unknown command %d", c->cmd);
	return r;
}

static void rc_send_reply(int fd, struct rc_reply *r)
{
	if (send(fd, r, sizeof(*r), MSG_NOSIGNAL) != sizeof(*r))
		_exit(1);
}

/* A worker: serve commands on channel me until exit or end of file. */
static void rc_worker(int me)
{
	rc_is_worker = 1;
	signal(SIGCHLD, SIG_IGN);  /* children are reaped by the kernel */
	signal(SIGINT, SIG_IGN);   /* the controller handles Ctrl-C */
	signal(SIGTERM, SIG_DFL);
	for (;;) {
		struct rc_reply hello = rc_reply_errno(RR_HELLO, 0);
		int fd = rc_procs[me].wfd;
		hello.pid = getpid();
		rc_send_reply(fd, &hello);
		for (;;) {
			struct rc_cmd c;
			ssize_t n = recv(fd, &c, sizeof(c), 0);
			if (n <= 0)
				_exit(0);  /* the controller is gone: so are we */
			if (n != sizeof(c))
				_exit(1);
			if (c.cmd == C_EXIT)
				_exit(0);
			if (c.cmd == C_FORK) {
				pid_t pid = fork();
				if (pid == 0) {
					me = c.child;
					break;  /* the child says hello on its own channel */
				}
				struct rc_reply r = pid < 0 ? rc_reply_errno(RR_ERRNO, errno) : rc_reply_errno(RR_OK, 0);
				r.pid = pid;
				rc_send_reply(fd, &r);
				continue;
			}
			struct rc_reply r = rc_perform(&c);
			rc_send_reply(fd, &r);
		}
	}
}

/* -- the controller's side of a channel ---------------------------------------- */

static struct rc_reply rc_recv(int ch, const char *what)
{
	struct rc_reply r;
	struct pollfd p = { rc_procs[ch].fd, POLLIN, 0 };
	int n = poll(&p, 1, (int)(RC_TIMEOUT * 1000));
	if (n <= 0)
		rc_die("worker %s did not answer within %gs while %s", rc_procs[ch].name, RC_TIMEOUT, what);
	ssize_t got = recv(rc_procs[ch].fd, &r, sizeof(r), 0);
	if (got != sizeof(r))
		rc_die("worker %s hung up while %s", rc_procs[ch].name, what);
	return r;
}

static struct rc_reply rc_request(int ch, struct rc_cmd *c, const char *what)
{
	if (!rc_procs[ch].alive)
		rc_die("no live process %s for '%s'", rc_procs[ch].name, what);
	if (send(rc_procs[ch].fd, c, sizeof(*c), MSG_NOSIGNAL) != sizeof(*c))
		rc_die("sending '%s' to worker %s failed: %s", what, rc_procs[ch].name, rc_errname(errno));
	struct rc_reply r = rc_recv(ch, what);
	if (r.kind == RR_ERROR)
		rc_die("worker %s could not perform '%s': %s", rc_procs[ch].name, what, r.text);
	return r;
}

static void rc_track(int ch, pid_t pid, const char *what)
{
	struct rc_reply hello = rc_recv(ch, what);
	if (hello.kind != RR_HELLO || hello.pid != pid)
		rc_die("unexpected hello from worker %s while %s", rc_procs[ch].name, what);
	rc_procs[ch].pid = pid;
	rc_procs[ch].pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	rc_procs[ch].alive = rc_procs[ch].started = 1;
}

static const char *rc_result(struct rc_reply r)
{
	switch (r.kind) {
	case RR_ERRNO:
		snprintf(rc_res, sizeof(rc_res), "%s", rc_errname(r.err));
		break;
	case RR_SIGSEGV:
		snprintf(rc_res, sizeof(rc_res), "SIGSEGV");
		break;
	case RR_VALUE:
		snprintf(rc_res, sizeof(rc_res), "%ld", r.ret);
		break;
	case RR_VALUES: {
		/* One value if all pages read the same, else V,V,... */
		int same = 1, len = 0;
		for (int i = 1; i < r.n; i++)
			same &= rc_values[i] == rc_values[0];
		for (int i = 0; i < (same ? 1 : r.n) && len < (int)sizeof(rc_res) - 24; i++)
			len += snprintf(rc_res + len, sizeof(rc_res) - len, "%s%llu", i ? "," : "",
					(unsigned long long)rc_values[i]);
		break;
	}
	default:
		snprintf(rc_res, sizeof(rc_res), "ok");
	}
	return rc_res;
}

static const char *rc_simple(int ch, int cmd, uint64_t page, int npages, const char *what)
{
	struct rc_cmd c = { .cmd = cmd, .npages = npages, .addr = RC_ARENA_BASE + page * RC_PAGE,
			    .len = npages * RC_PAGE };
	return rc_result(rc_request(ch, &c, what));
}

static const char *rc_mmap(int ch, uint64_t page, int npages, int prot, int flags, int thp, const char *what)
{
	struct rc_cmd c = { .cmd = C_MMAP, .addr = RC_ARENA_BASE + page * RC_PAGE, .len = npages * RC_PAGE,
			    .prot = prot, .flags = flags, .thp = thp };
	if (thp < 0) {
		/* No madvise: the system's THP setting decides. With "always" a fault may
		 * map a huge page, which the model has not: refuse, as the live runner does. */
		char buf[128] = "";
		FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
		if (f) {
			if (!fgets(buf, sizeof(buf), f))
				buf[0] = 0;
			fclose(f);
		}
		if (strstr(buf, "[always]"))
			rc_die("'%s': transparent_hugepage/enabled is 'always', so a fault may map a huge page, "
			       "which the model has not; thp_system needs 'madvise' or 'never'", what);
	}
	return rc_result(rc_request(ch, &c, what));
}

static const char *rc_munmap(int ch, uint64_t page, int npages, const char *what)
{
	return rc_simple(ch, C_MUNMAP, page, npages, what);
}

static const char *rc_mprotect(int ch, uint64_t page, int npages, int prot, const char *what)
{
	struct rc_cmd c = { .cmd = C_MPROTECT, .addr = RC_ARENA_BASE + page * RC_PAGE, .len = npages * RC_PAGE,
			    .prot = prot };
	return rc_result(rc_request(ch, &c, what));
}

static const char *rc_madvise(int ch, uint64_t page, int npages, int advice, const char *what)
{
	struct rc_cmd c = { .cmd = C_MADVISE, .addr = RC_ARENA_BASE + page * RC_PAGE, .len = npages * RC_PAGE,
			    .advice = advice };
	return rc_result(rc_request(ch, &c, what));
}

static const char *rc_mremap(int ch, uint64_t page, int npages, int new_npages, int flags, uint64_t new_page,
			     const char *what)
{
	struct rc_cmd c = { .cmd = C_MREMAP, .addr = RC_ARENA_BASE + page * RC_PAGE, .len = npages * RC_PAGE,
			    .new_len = new_npages * RC_PAGE, .flags = flags,
			    .new_addr = (flags & MREMAP_FIXED) ? RC_ARENA_BASE + new_page * RC_PAGE : 0 };
	return rc_result(rc_request(ch, &c, what));
}

static const char *rc_access(int ch, int cmd, uint64_t page, int npages, uint64_t value, const char *what)
{
	struct rc_cmd c = { .cmd = cmd, .addr = RC_ARENA_BASE + page * RC_PAGE, .npages = npages, .value = value };
	return rc_result(rc_request(ch, &c, what));
}

static const char *rc_fork(int ch, int child, const char *what)
{
	struct rc_cmd c = { .cmd = C_FORK, .child = child };
	struct rc_reply r = rc_request(ch, &c, what);
	if (r.kind != RR_OK)
		return rc_result(r);
	rc_track(child, r.pid, what);
	/* MMF_VM_MERGE_ANY is inherited */
	rc_procs[child].merge_any = rc_procs[ch].merge_any;
	return rc_result(r);
}

static void rc_reap(void)
{
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

/* Whether pid is gone or a zombie (its address space torn down). */
static int rc_exited(struct rc_proc *p)
{
	char path[64], buf[256];
	if (p->pidfd >= 0) {
		struct pollfd q = { p->pidfd, POLLIN, 0 };
		return poll(&q, 1, 0) > 0;
	}
	snprintf(path, sizeof(path), "/proc/%d/stat", p->pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 1;
	int got = fgets(buf, sizeof(buf), f) != NULL;
	fclose(f);
	char *rp = strrchr(buf, ')');
	return !got || !rp || rp[2] == 'Z' || rp[2] == 'X';
}

static const char *rc_exit(int ch, const char *what)
{
	struct rc_cmd c = { .cmd = C_EXIT };
	if (send(rc_procs[ch].fd, &c, sizeof(c), MSG_NOSIGNAL) != sizeof(c))
		rc_die("sending '%s' to worker %s failed", what, rc_procs[ch].name);
	rc_procs[ch].alive = 0;
	rc_procs[ch].merge_any = 0;
	/* Wait until it has exited: exit_mm() has torn the address space down. */
	double deadline = rc_now() + RC_TIMEOUT;
	while (!rc_exited(&rc_procs[ch])) {
		if (rc_now() > deadline)
			rc_die("worker %s still running %gs after '%s'", rc_procs[ch].name, RC_TIMEOUT, what);
		rc_sleep(0.0005);
	}
	rc_reap();
	return "ok";
}

static const char *rc_prctl_merge(int ch, int value, const char *what)
{
	struct rc_cmd c = { .cmd = C_PRCTL_MERGE, .value = (uint64_t)value };
	const char *res = rc_result(rc_request(ch, &c, what));
	if (!strcmp(res, "ok"))
		rc_procs[ch].merge_any = value != 0;
	return res;
}

static const char *rc_prctl_get(int ch, const char *what)
{
	struct rc_cmd c = { .cmd = C_PRCTL_GET };
	return rc_result(rc_request(ch, &c, what));
}

/* move_pages(pid, 1, {addr}, {node}, status, MPOL_MF_MOVE_ALL): the live runner's
 * "migrate" (node 0). On a machine of one NUMA node nothing moves. */
static int rc_move_page(pid_t pid, uint64_t addr, int node, int *status)
{
	void *pages[1] = { (void *)addr };
	int nodes[1] = { node };
	*status = -1000;
	return (int)syscall(SYS_move_pages, pid, 1UL, pages, nodes, status, RC_MPOL_MF_MOVE_ALL);
}

static const char *rc_migrate(int ch, uint64_t page, const char *what)
{
	int status;
	if (rc_move_page(rc_procs[ch].pid, RC_ARENA_BASE + page * RC_PAGE, 0, &status) < 0)
		rc_die("move_pages for '%s' failed: %s", what, rc_errname(errno));
	if (status > 0)
		rc_die("move_pages for '%s' put the page on node %d", what, status);
	snprintf(rc_res, sizeof(rc_res), "%s", status == 0 ? "ok" : rc_errname(-status));
	return rc_res;
}

/* -- KSM: the knobs, saved, changed and always restored ----------------------- */

static const char *const rc_writable[] = {
	"advisor_mode", "max_page_sharing", "merge_across_nodes", "advisor_max_cpu",
	"advisor_min_pages_to_scan", "advisor_max_pages_to_scan", "advisor_target_scan_time",
	"sleep_millisecs", "pages_to_scan", "use_zero_pages", "smart_scan",
	"stable_node_chains_prune_millisecs", "run",
};
#define RC_NKNOBS ((int)(sizeof(rc_writable) / sizeof(rc_writable[0])))
static const char *const rc_counters[] = { "ksm_zero_pages", "pages_shared", "pages_sharing", "pages_unshared",
					   "pages_volatile" };
static char rc_saved[RC_NKNOBS][64];
static int rc_is_saved[RC_NKNOBS];
static int rc_ksm_on, rc_lock_fd = -1, rc_kick;
static void *rc_sentinel;

static int rc_knob_index(const char *name)
{
	for (int i = 0; i < RC_NKNOBS; i++)
		if (!strcmp(rc_writable[i], name))
			return i;
	return -1;
}

/* A knob's value; for a choice ("[none] scan-time") the chosen one; NULL if absent. */
static const char *rc_read_knob(const char *name, char *buf, size_t size)
{
	char path[128], raw[256];
	snprintf(path, sizeof(path), RC_KSM_DIR "/%s", name);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return NULL;
	ssize_t n = read(fd, raw, sizeof(raw) - 1);
	close(fd);
	if (n < 0)
		return NULL;
	raw[n] = 0;
	char *s = raw, *open_br = strchr(raw, '['), *close_br;
	if (open_br && (close_br = strchr(open_br, ']'))) {
		*close_br = 0;
		s = open_br + 1;
	}
	while (*s && isspace((unsigned char)*s))
		s++;
	size_t len = strlen(s);
	while (len && isspace((unsigned char)s[len - 1]))
		s[--len] = 0;
	snprintf(buf, size, "%s", s);
	return buf;
}

static long rc_knob_long(const char *name)
{
	char buf[64];
	return rc_read_knob(name, buf, sizeof(buf)) ? atol(buf) : -1;
}

/* Write value to a knob; 0 or the errno (async-signal-safe). */
static int rc_write_knob(const char *name, const char *value)
{
	char path[128];
	snprintf(path, sizeof(path), RC_KSM_DIR "/%s", name);
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		return errno;
	int err = write(fd, value, strlen(value)) < 0 ? errno : 0;
	close(fd);
	return err;
}

static void rc_write_save_file(void)
{
	char tmp[128];
	snprintf(tmp, sizeof(tmp), RC_SAVE_FILE ".%d.tmp", (int)getpid());
	FILE *f = fopen(tmp, "w");
	if (!f)
		rc_die("cannot write %s: %s", tmp, rc_errname(errno));
	fprintf(f, "{\"ksm_dir\": \"" RC_KSM_DIR "\", \"pid\": %d, \"saved\": {", (int)getpid());
	int first = 1;
	for (int i = 0; i < RC_NKNOBS; i++)
		if (rc_is_saved[i]) {
			fprintf(f, "%s\"%s\": \"%s\"", first ? "" : ", ", rc_writable[i], rc_saved[i]);
			first = 0;
		}
	fprintf(f, "}}");
	fflush(f);
	fsync(fileno(f));
	fclose(f);
	if (rename(tmp, RC_SAVE_FILE))
		rc_die("cannot write %s: %s", RC_SAVE_FILE, rc_errname(errno));
}

/* Save a knob (and the knobs writing it changes) before its first change. */
static void rc_save(const char *name)
{
	const char *also = !strcmp(name, "advisor_mode") ? "pages_to_scan" :
		(!strcmp(name, "max_page_sharing") || !strcmp(name, "merge_across_nodes")) ? "run" : NULL;
	int fresh = 0;
	for (int k = 0; k < 2; k++) {
		const char *n = k ? also : name;
		int i = n ? rc_knob_index(n) : -1;
		if (i >= 0 && !rc_is_saved[i] && rc_read_knob(n, rc_saved[i], sizeof(rc_saved[i]))) {
			rc_is_saved[i] = 1;
			fresh = 1;
		}
	}
	if (fresh)
		rc_write_save_file();
}

/* Write values[i] (NULL: leave) in the kernel's order, run last, unmerging first
 * (run=2) when max_page_sharing or merge_across_nodes really changes: they can
 * only change while there are no KSM pages. Returns the number of refused writes. */
static int rc_apply(char values[][64], const int *set)
{
	char now[64], run_before[64] = "0";
	int unmerged = 0, refused = 0, run = rc_knob_index("run");
	rc_read_knob("run", run_before, sizeof(run_before));
	for (int i = 0; i < RC_NKNOBS; i++) {
		if (!set[i] || i == run || !rc_read_knob(rc_writable[i], now, sizeof(now)) || !strcmp(now, values[i]))
			continue;
		if (!unmerged && (!strcmp(rc_writable[i], "max_page_sharing") ||
				  !strcmp(rc_writable[i], "merge_across_nodes"))) {
			refused += rc_write_knob("run", "2") != 0;
			unmerged = 1;
		}
		refused += rc_write_knob(rc_writable[i], values[i]) != 0;
	}
	const char *want = set[run] ? values[run] : run_before;
	if (unmerged || !rc_read_knob("run", now, sizeof(now)) || strcmp(now, want))
		refused += rc_write_knob("run", want) != 0;
	return refused;
}

static void rc_ksm_set_values(const char *const *names, const char *const *values, int n)
{
	char vals[RC_NKNOBS][64];
	int set[RC_NKNOBS] = { 0 };
	for (int j = 0; j < n; j++) {
		int i = rc_knob_index(names[j]);
		char probe[64];
		if (i < 0 || !rc_read_knob(names[j], probe, sizeof(probe)))
			continue;  /* a knob this kernel does not have */
		rc_save(names[j]);
		snprintf(vals[i], sizeof(vals[i]), "%s", values[j]);
		set[i] = 1;
	}
	if (rc_apply(vals, set))
		rc_die("writing KSM knobs failed (the kernel refused a value)");
}

static void rc_ksm_restore(void)
{
	if (!rc_ksm_on)
		return;
	rc_ksm_on = 0;
	/* Unmerge what the run left (an exited mm's rmap_items stay until ksmd passes again). */
	rc_write_knob("run", "2");
	rc_write_knob("run", "0");
	if (rc_apply(rc_saved, rc_is_saved) == 0)
		unlink(RC_SAVE_FILE);
	else
		fprintf(stderr, "repro: restoring the KSM knobs failed; they are saved in " RC_SAVE_FILE "\n");
	if (rc_lock_fd >= 0) {
		close(rc_lock_fd);
		rc_lock_fd = -1;
	}
}

/* Restore the knobs a run killed before its restore left in the save file. */
static void rc_recover_stale(void)
{
	char text[4096], vals[RC_NKNOBS][64];
	int set[RC_NKNOBS] = { 0 };
	FILE *f = fopen(RC_SAVE_FILE, "r");
	if (!f)
		return;
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = 0;
	char *p = strstr(text, "\"pid\":");
	int pid = p ? atoi(p + 6) : 0;
	if (pid > 0 && pid != getpid() && (kill(pid, 0) == 0 || errno == EPERM))
		rc_die("KSM settings are held by running process %d (save file %s)", pid, RC_SAVE_FILE);
	p = strstr(text, "\"saved\":");
	for (int i = 0; p && i < RC_NKNOBS; i++) {
		char key[96], *q;
		snprintf(key, sizeof(key), "\"%s\": \"", rc_writable[i]);
		if ((q = strstr(p, key))) {
			q += strlen(key);
			size_t len = strcspn(q, "\"");
			snprintf(vals[i], sizeof(vals[i]), "%.*s", (int)(len < 63 ? len : 63), q);
			set[i] = 1;
		}
	}
	if (rc_apply(vals, set))
		rc_die("restoring the KSM knobs of %s failed", RC_SAVE_FILE);
	unlink(RC_SAVE_FILE);
}

static void rc_lock(void)
{
	const char *env = getenv(RC_LOCK_FD_ENV);
	/* A parent holding the lock may hand its descriptor down: the same open file. */
	rc_lock_fd = env ? dup(atoi(env)) : open(RC_LOCK_FILE, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (rc_lock_fd < 0)
		rc_die("cannot open %s: %s", RC_LOCK_FILE, rc_errname(errno));
	double deadline = rc_now() + RC_LOCK_TIMEOUT;
	while (flock(rc_lock_fd, LOCK_EX | LOCK_NB)) {
		if (rc_now() > deadline)
			rc_die("another process held %s (KSM settings) for %gs", RC_LOCK_FILE, RC_LOCK_TIMEOUT);
		rc_sleep(0.01);
	}
}

/* Processes other than this one with anonymous memory in a VM_MERGEABLE VMA:
 * ksmd would count their pages too. */
static void rc_check_others(void)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	char path[300], line[512], others[512] = "";
	while (d && (e = readdir(d))) {
		if (!isdigit((unsigned char)e->d_name[0]) || atoi(e->d_name) == getpid())
			continue;
		snprintf(path, sizeof(path), "/proc/%s/ksm_stat", e->d_name);
		FILE *f = fopen(path, "r");
		int mergeable = 0;
		if (!f)
			continue;
		while (fgets(line, sizeof(line), f))
			mergeable |= !strncmp(line, "ksm_mergeable: yes", 18);
		fclose(f);
		if (!mergeable)
			continue;
		snprintf(path, sizeof(path), "/proc/%s/smaps", e->d_name);
		if (!(f = fopen(path, "r")))
			continue;
		long anon = 0, total = 0;
		while (fgets(line, sizeof(line), f)) {
			if (!strncmp(line, "Anonymous:", 10))
				anon = atol(line + 10);
			else if (!strncmp(line, "VmFlags:", 8)) {
				if (strstr(line, " mg"))
					total += anon;
				anon = 0;
			}
		}
		fclose(f);
		if (total && strlen(others) < sizeof(others) - 32)
			snprintf(others + strlen(others), sizeof(others) - strlen(others), " %s", e->d_name);
	}
	if (d)
		closedir(d);
	if (others[0])
		rc_die("processes with mergeable memory would be counted by KSM's global counters:%s", others);
}

/* ksmd under control: stopped (run=0) between steps, exactly one full pass per scan. */
static void rc_ksm_start(void)
{
	static const char *const names[] = { "advisor_mode", "max_page_sharing", "merge_across_nodes", "use_zero_pages",
					     "smart_scan", "stable_node_chains_prune_millisecs", "pages_to_scan",
					     "sleep_millisecs", "run" };
	static const char *const values[] = { "none", "256", "1", "0", "0", "3600000", "1048576", "600000", "0" };
	if (access(RC_KSM_DIR "/run", F_OK))
		rc_die("no KSM in this kernel (" RC_KSM_DIR " missing)");
	rc_lock();
	rc_recover_stale();
	rc_ksm_on = 1;
	/* ksmd runs only while some mm is on its list: one never-touched PROT_NONE
	 * mergeable page here keeps it so, with no rmap_item and no counter. */
	rc_sentinel = mmap(NULL, RC_PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (rc_sentinel == MAP_FAILED || madvise(rc_sentinel, RC_PAGE, RC_MADV_MERGEABLE))
		rc_die("the KSM sentinel page failed: %s", rc_errname(errno));
	rc_ksm_set_values(names, values, 9);
	for (int i = 0; i < 5; i++)
		if (rc_knob_long(rc_counters[i]) > 0) {
			/* Someone's KSM pages (or a killed run's): unmerge them all. */
			static const char *const run[] = { "run" };
			static const char *const two[] = { "2" }, *const zero[] = { "0" };
			rc_ksm_set_values(run, two, 1);
			rc_ksm_set_values(run, zero, 1);
			for (int j = 0; j < 5; j++)
				if (rc_knob_long(rc_counters[j]) > 0)
					rc_die("KSM counter %s not zero after run=2", rc_counters[j]);
			break;
		}
	rc_check_others();
}

static void rc_kick_ksmd(void)
{
	char v[32];
	snprintf(v, sizeof(v), "%d", RC_SLEEP_BASE + (++rc_kick) % 997);
	rc_write_knob("sleep_millisecs", v);
	rc_write_knob("run", "1");
}

static void rc_unmerge_workers(void)
{
	for (int i = 0; i < RC_CHANNELS; i++)
		if (rc_procs[i].alive && rc_procs[i].merge_any) {
			struct rc_cmd c = { .cmd = C_UNMERGE_OUTSIDE };
			rc_request(i, &c, "unmerging outside the arena");
		}
}

/* One full pass of ksmd: a fresh sleep_millisecs wakes its timed wait, run=1
 * its idle wait; pages_to_scan exceeds every page, so one batch is one pass;
 * run=0 returns once the batch has ended (it takes ksm_thread_mutex). */
static void rc_one_pass(void)
{
	long start = rc_knob_long("full_scans");
	double patience = 0.25, deadline = rc_now() + RC_TIMEOUT;
	for (;;) {
		rc_kick_ksmd();
		double until = rc_now() + patience;
		while (rc_knob_long("full_scans") == start && rc_now() < until && rc_now() < deadline)
			rc_sleep(0.0002);
		rc_write_knob("run", "0");
		long now = rc_knob_long("full_scans");
		if (now == start + 1)
			return;
		if (now > start + 1)
			rc_die("ksmd did %ld full scans where one was started", now - start);
		if (rc_now() >= deadline)
			rc_die("ksmd did not complete a full scan within %gs", RC_TIMEOUT);
		patience *= 2;  /* the wake-up was lost, or ksmd got no CPU: again */
	}
}

static const char *rc_ksm_scan(int n)
{
	rc_unmerge_workers();
	for (int i = 0; i < n; i++)
		rc_one_pass();
	return "ok";
}

/* ksm_set KNOB V: saved first, then written as it is (nothing written before it). */
static const char *rc_ksm_set(const char *name, const char *value)
{
	rc_save(name);
	int err = rc_write_knob(name, value);
	snprintf(rc_res, sizeof(rc_res), "%s", err ? rc_errname(err) : "ok");
	return rc_res;
}

/* -- kernel threads a program cannot schedule: the closest a user can do ---- */

static int rc_online_nodes(int *nodes, int most)
{
	char buf[256] = "0";
	int n = 0;
	FILE *f = fopen("/sys/devices/system/node/online", "r");
	if (f) {
		if (!fgets(buf, sizeof(buf), f))
			snprintf(buf, sizeof(buf), "0");
		fclose(f);
	}
	for (char *tok = strtok(buf, ",\n"); tok && n < most; tok = strtok(NULL, ",\n")) {
		int lo, hi;
		if (sscanf(tok, "%d-%d", &lo, &hi) == 2)
			for (int i = lo; i <= hi && n < most; i++)
				nodes[n++] = i;
		else if (sscanf(tok, "%d", &lo) == 1)
			nodes[n++] = lo;
	}
	return n ? n : (nodes[0] = 0, 1);
}

static uint64_t rc_pfn(pid_t pid, uint64_t addr)
{
	char path[64];
	uint64_t e = 0;
	snprintf(path, sizeof(path), "/proc/%d/pagemap", pid);
	int fd = open(path, O_RDONLY);
	if (fd >= 0) {
		if (pread(fd, &e, 8, (off_t)(addr / RC_PAGE * 8)) != 8)
			e = 0;
		close(fd);
	}
	return (e & PM_PRESENT) ? (e & PM_PFRAME_MASK) : 0;
}

/* One user-triggered rmap walk over the page at addr of pid: with
 * CONFIG_IDLE_PAGE_TRACKING, marking its frame idle in page_idle/bitmap runs
 * rmap_walk() (page_idle_clear_pte_refs()); MADV_PAGEOUT through
 * process_madvise() reclaims it, whose try_to_unmap() walks the rmap when
 * the kernel has swap. Neither is the model's reclaim walk in phases. */
static void rc_rmap_walk(pid_t pid, int pidfd, uint64_t addr)
{
	uint64_t pfn = rc_pfn(pid, addr);
	if (pfn) {
		int fd = open("/sys/kernel/mm/page_idle/bitmap", O_WRONLY);
		if (fd >= 0) {
			uint64_t bit = 1ULL << (pfn % 64);
			if (pwrite(fd, &bit, 8, (off_t)(pfn / 64 * 8)) < 0) { /* best effort */ }
			close(fd);
		}
	}
	struct iovec iov = { (void *)addr, RC_PAGE };
	if (pidfd >= 0)
		syscall(SYS_process_madvise, pidfd, &iov, 1UL, MADV_PAGEOUT, 0U);
}

/* Start racer id: a process that, until stopped (and for RC_RACE_SECONDS at
 * most), migrates the page over and over (between the online nodes: with one
 * node the kernel leaves it where it is) or walks its rmap, while the steps
 * that follow run in the workers. */
static void rc_race(int id, int migrate, int ch, uint64_t page)
{
	pid_t pid = rc_procs[ch].pid;
	int pidfd = rc_procs[ch].pidfd;
	uint64_t addr = RC_ARENA_BASE + page * RC_PAGE;
	pid_t r = fork();
	if (r < 0)
		rc_die("fork of a racer failed: %s", rc_errname(errno));
	if (r == 0) {
		int nodes[64], n = rc_online_nodes(nodes, 64), i = 0, status;
		double end = rc_now() + RC_RACE_SECONDS;
		rc_is_worker = 1;
		signal(SIGINT, SIG_IGN);
		for (int c = 0; c < RC_CHANNELS; c++)  /* workers see end of file when the controller goes */
			close(rc_procs[c].fd);
		while (rc_now() < end) {
			if (migrate)
				rc_move_page(pid, addr, nodes[i++ % n], &status);
			else
				rc_rmap_walk(pid, pidfd, addr);
		}
		_exit(0);
	}
	rc_racers[id] = r;
}

static void rc_race_stop(int id)
{
	if (rc_racers[id] > 0) {
		kill(rc_racers[id], SIGKILL);
		waitpid(rc_racers[id], NULL, 0);
		rc_racers[id] = 0;
	}
}

static const char *rc_reclaim_once(int ch, uint64_t page)
{
	rc_rmap_walk(rc_procs[ch].pid, rc_procs[ch].pidfd, RC_ARENA_BASE + page * RC_PAGE);
	return "ok";
}

/* ksmd N: one batch of N pages, as close as sysfs allows: pages_to_scan N for one
 * wake-up, stopped once pages_scanned moved by N or a pass ended. */
static const char *rc_ksmd(int pages)
{
	char v[32];
	long scanned = rc_knob_long("pages_scanned"), full = rc_knob_long("full_scans");
	double deadline = rc_now() + RC_TIMEOUT;
	rc_unmerge_workers();
	rc_save("pages_to_scan");
	snprintf(v, sizeof(v), "%d", pages);
	rc_write_knob("pages_to_scan", v);
	rc_kick_ksmd();
	while (rc_knob_long("pages_scanned") < scanned + pages && rc_knob_long("full_scans") == full &&
	       rc_now() < deadline)
		rc_sleep(0.0002);
	rc_write_knob("run", "0");
	rc_write_knob("pages_to_scan", "1048576");
	return "ok";
}

/* -- observing --------------------------------------------------------------- */

/* Frame keys (a pfn, or a swap entry's bits), numbered in order of first appearance. */
struct rc_key { int used, kind, num; uint64_t v; };
static struct rc_key *rc_keys;  /* open addressing, RC_KEY_SLOTS entries */
static int *rc_ksm_frames;
static int rc_nkeys;
#define RC_KEY_SLOTS (2 * (size_t)RC_ARENA_PAGES * RC_CHANNELS + 1)

static int rc_frame_number(int kind, uint64_t v)
{
	size_t i = (size_t)((v * 0x9E3779B97F4A7C15ULL + (uint64_t)kind) % RC_KEY_SLOTS);
	while (rc_keys[i].used && !(rc_keys[i].kind == kind && rc_keys[i].v == v))
		i = (i + 1) % RC_KEY_SLOTS;
	if (!rc_keys[i].used) {
		rc_keys[i].used = 1;
		rc_keys[i].kind = kind;
		rc_keys[i].v = v;
		rc_keys[i].num = rc_nkeys++;
	}
	return rc_keys[i].num;
}

static int rc_read_pagemap(pid_t pid, uint64_t *entries)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/pagemap", pid);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t want = RC_ARENA_PAGES * 8;
	ssize_t n = pread(fd, entries, want, (off_t)(RC_ARENA_BASE / RC_PAGE * 8));
	close(fd);
	return n == want ? 0 : -1;
}

static void rc_json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			putchar('\\');
		putchar(*s);
	}
	putchar('"');
}

static int rc_by_name(const void *a, const void *b)
{
	return strcmp(rc_procs[*(const int *)a].name, rc_procs[*(const int *)b].name);
}

/* Print step's observation as one JSON line: the object `rmapcheck live --json` has per step. */
static void rc_observe(int step, const char *text, const char *result)
{
	static uint64_t entries[RC_ARENA_PAGES];
	int order[RC_CHANNELS], n = 0;
	int kflags = open("/proc/kpageflags", O_RDONLY);
	char line[512], path[64];
	if (kflags < 0)
		rc_die("cannot read /proc/kpageflags (run as root): %s", rc_errname(errno));
	for (int i = 0; i < RC_CHANNELS; i++)
		if (rc_procs[i].alive)
			order[n++] = i;
	qsort(order, n, sizeof(int), rc_by_name);
	printf("{\"step\": %d, \"op\": ", step);
	rc_json_str(text);
	printf(", \"result\": ");
	rc_json_str(result);
	printf(", \"layout\": {");
	for (int j = 0; j < n; j++) {
		struct rc_proc *p = &rc_procs[order[j]];
		uint64_t lo_a = RC_ARENA_BASE, hi_a = RC_ARENA_BASE + RC_ARENA_PAGES * RC_PAGE;
		int first = 1;
		printf("%s\"%s\": [", j ? ", " : "", p->name);
		snprintf(path, sizeof(path), "/proc/%d/maps", p->pid);
		FILE *f = fopen(path, "r");
		if (!f)
			rc_die("observing %s failed: %s", p->name, rc_errname(errno));
		while (fgets(line, sizeof(line), f)) {
			unsigned long long lo, hi;
			char perms[8];
			if (sscanf(line, "%llx-%llx %7s", &lo, &hi, perms) != 3)
				continue;
			if (lo >= hi_a)
				break;
			if (hi <= lo_a || perms[3] != 'p')
				continue;
			printf("%s[%llu, %llu, \"%.3s\"]", first ? "" : ", ",
			       (unsigned long long)(((lo > lo_a ? lo : lo_a) - lo_a) / RC_PAGE),
			       (unsigned long long)(((hi < hi_a ? hi : hi_a) - lo_a) / RC_PAGE), perms);
			first = 0;
		}
		fclose(f);
		printf("]");
	}
	printf("}, \"frames\": {");
	int *ksm = rc_ksm_frames, nksm = 0;
	rc_nkeys = 0;
	memset(rc_keys, 0, sizeof(*rc_keys) * RC_KEY_SLOTS);
	for (int j = 0; j < n; j++) {
		struct rc_proc *p = &rc_procs[order[j]];
		if (rc_read_pagemap(p->pid, entries))
			rc_die("reading /proc/%d/pagemap of %s failed", p->pid, p->name);
		/* A page caught mid-migration shows a (migration) swap entry for a moment. */
		double deadline = rc_now() + 0.05;
		for (;;) {
			int swap = 0;
			for (int i = 0; i < RC_ARENA_PAGES; i++)
				swap |= (entries[i] & PM_SWAP) != 0;
			if (!swap || rc_now() >= deadline)
				break;
			rc_sleep(0.001);
			if (rc_read_pagemap(p->pid, entries))
				rc_die("reading /proc/%d/pagemap of %s failed", p->pid, p->name);
		}
		printf("%s\"%s\": [", j ? ", " : "", p->name);
		for (int i = 0; i < RC_ARENA_PAGES; i++) {
			uint64_t e = entries[i], flags = 0;
			if (i)
				printf(", ");
			if (e & PM_PRESENT) {
				uint64_t pfn = e & PM_PFRAME_MASK;
				if (pread(kflags, &flags, 8, (off_t)(pfn * 8)) != 8)
					rc_die("reading /proc/kpageflags failed");
				if (flags >> KPF_ZERO_PAGE & 1) {
					printf("-1");
					continue;
				}
				int num = rc_frame_number(0, pfn);
				printf("%d", num);
				if (flags >> KPF_KSM & 1) {
					int seen = 0;
					for (int k = 0; k < nksm; k++)
						seen |= ksm[k] == num;
					if (!seen)
						ksm[nksm++] = num;
				}
			} else if (e & PM_SWAP) {
				printf("%d", rc_frame_number(1, e & PM_PFRAME_MASK));
			} else {
				printf("null");
			}
		}
		printf("]");
	}
	close(kflags);
	printf("}, \"ksm\": [");
	for (int a = 0; a < nksm; a++)  /* sorted */
		for (int b = a + 1; b < nksm; b++)
			if (ksm[b] < ksm[a]) {
				int t = ksm[a];
				ksm[a] = ksm[b];
				ksm[b] = t;
			}
	for (int k = 0; k < nksm; k++)
		printf("%s%d", k ? ", " : "", ksm[k]);
	printf("]");
	if (rc_ksm_on && RC_USES_KSM) {
		printf(", \"counters\": {");
		for (int i = 0; i < 5; i++)
			printf("%s\"%s\": %ld", i ? ", " : "", rc_counters[i], rc_knob_long(rc_counters[i]));
		printf("}, \"ksm_stat\": {");
		for (int j = 0; j < n; j++) {
			struct rc_proc *p = &rc_procs[order[j]];
			long merging = -1, items = -1, zero = -1;
			snprintf(path, sizeof(path), "/proc/%d/ksm_stat", p->pid);
			FILE *f = fopen(path, "r");
			if (!f)
				rc_die("reading %s failed: %s", path, rc_errname(errno));
			while (fgets(line, sizeof(line), f)) {
				sscanf(line, "ksm_merging_pages %ld", &merging);
				sscanf(line, "ksm_rmap_items %ld", &items);
				sscanf(line, "ksm_zero_pages %ld", &zero);
			}
			fclose(f);
			printf("%s\"%s\": {\"ksm_merging_pages\": %ld, \"ksm_rmap_items\": %ld, \"ksm_zero_pages\": %ld}",
			       j ? ", " : "", p->name, merging, items, zero);
		}
		printf("}");
	}
	printf("}\n");
	fflush(stdout);
}

/* -- the steps ---------------------------------------------------------------- */

/* Print step i and check its result: the stated one (=> X), else the one the
 * model predicts, else (none known) success or a value. */
static void rc_step(int i, int line, const char *text, const char *expect, int value, const char *result)
{
	int bad = expect ? strcmp(result, expect) != 0 :
		(!strcmp(result, "SIGSEGV") || (!value && strcmp(result, "ok")));
	printf("step %d (line %d): %s -> %s%s%s\n", i, line, text, result, bad ? "  UNEXPECTED, expected " : "",
	       bad ? (expect ? expect : "success") : "");
	if (bad)
		rc_unexpected++;
	rc_observe(i, text, result);
}

/* A step the program cannot perform as the model does: say so, observe. */
static void rc_step_model_only(int i, int line, const char *text, const char *what)
{
	printf("step %d (line %d): %s -> not forced: %s\n", i, line, text, what);
	rc_observe(i, text, "model-only");
}

/* -- setup and cleanup --------------------------------------------------------- */

static void rc_cleanup(void)
{
	static int done;
	if (done || rc_is_worker)
		return;
	done = 1;
	for (int i = 0; i <= RC_RACERS; i++)
		rc_race_stop(i);
	for (int i = 0; i < RC_CHANNELS; i++) {
		struct rc_proc *p = &rc_procs[i];
		if (p->fd >= 0)
			close(p->fd);
		p->fd = -1;
		if (p->started && !rc_exited(p)) {
			if (p->pidfd >= 0)
				syscall(SYS_pidfd_send_signal, p->pidfd, SIGKILL, NULL, 0);
			else
				kill(p->pid, SIGKILL);
		}
	}
	double deadline = rc_now() + RC_TIMEOUT;
	for (int i = 0; i < RC_CHANNELS; i++)
		while (rc_procs[i].started && !rc_exited(&rc_procs[i]) && rc_now() < deadline)
			rc_sleep(0.001);
	for (int i = 0; i < RC_CHANNELS; i++) {
		rc_reap();
		if (rc_procs[i].started && !rc_exited(&rc_procs[i]))
			fprintf(stderr, "repro: worker %s (pid %d) still present after SIGKILL\n", rc_procs[i].name,
				rc_procs[i].pid);
	}
	rc_reap();
	rc_ksm_restore();  /* after the workers are gone: unmerge what they left, restore */
}

static void rc_on_signal(int sig)
{
	/* Restore first (the knob writes are plain open/write/close), then die of the signal. */
	rc_cleanup();
	signal(sig, SIG_DFL);
	raise(sig);
}

int main(void)
{
	if (geteuid() != 0)
		fprintf(stderr, "repro: not root: /proc/PID/pagemap shows no frame numbers and the KSM knobs "
			"cannot be written\n");
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, rc_on_signal);
	signal(SIGTERM, rc_on_signal);
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0))
		rc_die("PR_SET_CHILD_SUBREAPER failed: %s", rc_errname(errno));
	rc_values = mmap(NULL, (RC_ARENA_PAGES + 1) * 8, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	rc_keys = calloc(RC_KEY_SLOTS, sizeof(*rc_keys));
	rc_ksm_frames = calloc(RC_KEY_SLOTS, sizeof(int));
	if (rc_values == MAP_FAILED || !rc_keys || !rc_ksm_frames)
		rc_die("out of memory");
	for (int i = 0; i < RC_CHANNELS; i++) {
		int sv[2];
		rc_procs[i].name = rc_names[i];
		rc_procs[i].pidfd = -1;
		rc_procs[i].fd = rc_procs[i].wfd = -1;
		if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv))
			rc_die("socketpair failed: %s", rc_errname(errno));
		rc_procs[i].fd = sv[0];
		rc_procs[i].wfd = sv[1];
	}
	pid_t pid = fork();
	if (pid < 0)
		rc_die("fork of P0 failed: %s", rc_errname(errno));
	if (pid == 0) {
		for (int i = 0; i < RC_CHANNELS; i++)
			close(rc_procs[i].fd);
		rc_worker(0);
	}
	for (int i = 0; i < RC_CHANNELS; i++) {
		close(rc_procs[i].wfd);
		rc_procs[i].wfd = -1;
	}
	rc_track(0, pid, "starting P0");
	/* After P0 is forked: no worker inherits the controller's sentinel page. */
	if (RC_NEEDS_KSM)
		rc_ksm_start();
	run_steps();
	rc_cleanup();
	if (rc_unexpected)
		printf("repro: %d step(s) gave a result other than the expected one\n", rc_unexpected);
	else
		printf("repro: every step gave the expected result\n");
	return rc_unexpected ? 1 : 0;
}
