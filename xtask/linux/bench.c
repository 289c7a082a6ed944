/*
 * The Linux side of `cargo xtask bench --linux`: runs as /init (PID 1) of a tiny initramfs,
 * measures the rows Veridian's `mode=bench` prints under the same names, the same way
 * (reference-kernel/user/programs/src/bin/bench.rs), prints them in the same format and powers
 * the machine off:
 *
 *   bench <name> unit=tsc count=<n> min=.. median=.. p99=.. max=.. overhead=.. what="<text>"
 *
 * Each sample is one timed interval (`lfence; rdtsc` .. `rdtscp; lfence`, both asm blocks
 * compiler barriers) minus `overhead`, the smallest of 1000 empty intervals, divided by the
 * operations per interval; 100 warm-up runs, then 10 000 samples (page faults: one per page of
 * an 8 MiB region); quantiles are nearest-rank over the sorted samples. Under QEMU
 * `-icount shift=0` a unit is one guest instruction.
 *
 * Every process of the benchmark is pinned to CPU 0 (the affinity is set first and inherited
 * by the children), as the kernel pins Veridian's `bench` program and its partners.
 *
 * Built by xtask with `gcc -static -O2` (Debian packages gcc and libc6-dev).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/klog.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#define WARMUP 100
#define SAMPLES 10000
#define FAULT_PAGES 2048
#define PAGE 4096

static uint64_t samples[SAMPLES];

/* Start-of-interval read: `lfence; rdtsc` (waits for earlier instructions). */
static inline __attribute__((always_inline)) uint64_t tsc_start(void)
{
	uint32_t lo, hi;
	__asm__ volatile("lfence\n\trdtsc" : "=a"(lo), "=d"(hi) : : "memory");
	return ((uint64_t)hi << 32) | lo;
}

/* End-of-interval read: `rdtscp; lfence` (later instructions wait for the read). */
static inline __attribute__((always_inline)) uint64_t tsc_stop(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtscp\n\tlfence" : "=a"(lo), "=d"(hi) : : "rcx", "memory");
	return ((uint64_t)hi << 32) | lo;
}

/* The cost of an empty timed interval: the smallest of `runs` tries. */
static uint64_t tsc_overhead(int runs)
{
	uint64_t best = UINT64_MAX;
	for (int i = 0; i < runs; i++) {
		uint64_t a = tsc_start();
		uint64_t b = tsc_stop();
		if (b - a < best)
			best = b - a;
	}
	return runs > 0 ? best : 0;
}

/*
 * Runs BODY WARMUP times untimed, then once per sample of BUF[0..N), each sample the interval
 * minus OVERHEAD (saturating), divided by PER.
 */
#define TIME(buf, n, overhead, per, body)                                      \
	do {                                                                   \
		for (int w_ = 0; w_ < WARMUP; w_++) {                          \
			body;                                                  \
		}                                                              \
		for (size_t i_ = 0; i_ < (size_t)(n); i_++) {                  \
			uint64_t t0_ = tsc_start();                            \
			body;                                                  \
			uint64_t t1_ = tsc_stop();                             \
			uint64_t d_ = t1_ - t0_;                               \
			(buf)[i_] = (d_ > (overhead) ? d_ - (overhead) : 0) /  \
				    (per);                                     \
		}                                                              \
	} while (0)

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

/* Nearest rank: the index of rank max(1, ceil(num * n / den)). */
static size_t rank(size_t num, size_t den, size_t n)
{
	size_t r = (num * n + den - 1) / den;
	return (r < 1 ? 1 : r) - 1;
}

/* Sorts the samples and prints the benchmark line. */
static void report(const char *name, const char *what, uint64_t *buf, size_t n, uint64_t overhead)
{
	if (n == 0) {
		printf("bench %s error=\"no samples\"\n", name);
		return;
	}
	qsort(buf, n, sizeof *buf, cmp_u64);
	printf("bench %s unit=tsc count=%zu min=%llu median=%llu p99=%llu max=%llu "
	       "overhead=%llu what=\"%s\"\n",
	       name, n, (unsigned long long)buf[0], (unsigned long long)buf[rank(1, 2, n)],
	       (unsigned long long)buf[rank(99, 100, n)], (unsigned long long)buf[n - 1],
	       (unsigned long long)overhead, what);
	fflush(stdout);
}

static void fail(const char *name, const char *what)
{
	printf("bench %s error=\"%s: %s\"\n", name, what, strerror(errno));
	fflush(stdout);
}

/* The CPU the caller runs on, as a mask bit (0 if unknown or above 62). */
static uint64_t cpu_bit(void)
{
	int c = sched_getcpu();
	return (c >= 0 && c < 63) ? (uint64_t)1 << c : 0;
}

static void null_syscall(uint64_t overhead)
{
	TIME(samples, SAMPLES, overhead, 1, {
		long r = syscall(SYS_getppid);
		__asm__ volatile("" : : "r"(r));
	});
	report("null_syscall", "getppid via syscall(SYS_getppid) from ring 3", samples, SAMPLES,
	       overhead);
}

/* What the yield partner and the measurer share (a MAP_SHARED page). */
struct yield_shared {
	volatile int stop;
	volatile long partner_yields;
	volatile uint64_t partner_cpus;
};

static void sched_yield_switch(uint64_t overhead)
{
	const char *name = "sched_yield_switch";
	struct yield_shared *sh = mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
				       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED) {
		fail(name, "mmap");
		return;
	}
	pid_t partner = fork();
	if (partner < 0) {
		fail(name, "fork");
		return;
	}
	if (partner == 0) {
		uint64_t seen = cpu_bit();
		while (!sh->stop) {
			sched_yield();
			sh->partner_yields++;
		}
		sh->partner_cpus = seen | cpu_bit();
		_exit(0);
	}
	/*
	 * CFS starts the new partner one slice behind (START_DEBIT), and yield hands the CPU only
	 * to a task not too far behind, so the first few thousand yields return without a switch:
	 * yield until the partner has taken its turns, then time.
	 */
	uint64_t mine = cpu_bit();
	for (long tries = 0; sh->partner_yields < WARMUP; tries++) {
		if (tries > 100 * (long)SAMPLES) {
			printf("bench %s error=\"the partner never ran\"\n", name);
			sh->stop = 1;
			waitpid(partner, NULL, 0);
			return;
		}
		sched_yield();
	}
	long before = sh->partner_yields;
	TIME(samples, SAMPLES, overhead, 2, { sched_yield(); });
	long answered = sh->partner_yields - before;
	mine |= cpu_bit();
	sh->stop = 1;
	int status = 0;
	if (waitpid(partner, &status, 0) < 0) {
		fail(name, "waitpid");
		return;
	}
	if (mine != sh->partner_cpus || __builtin_popcountll(mine) != 1) {
		printf("bench %s error=\"not one CPU: measurer on CPU mask %#llx, partner on %#llx\"\n",
		       name, (unsigned long long)mine, (unsigned long long)sh->partner_cpus);
		return;
	}
	/*
	 * Each yield, warm-up and timed, should let the partner run once; a kernel thread that
	 * wakes may take a turn (seen: one of 10 100), so 99 % are required.
	 */
	if (answered < (WARMUP + SAMPLES) * 99L / 100) {
		printf("bench %s error=\"the partner yielded %ld times for %d yields\"\n", name,
		       answered, WARMUP + SAMPLES);
		return;
	}
	munmap(sh, PAGE);
	report(name,
	       "sched_yield (CFS) to another process on the same CPU and back (2 yields, 2 "
	       "switches), halved: per switch",
	       samples, SAMPLES, overhead);
}

static void ipc_call_reply(uint64_t overhead)
{
	const char *name = "ipc_call_reply";
	int to_server[2], to_client[2];
	if (pipe(to_server) < 0 || pipe(to_client) < 0) {
		fail(name, "pipe");
		return;
	}
	pid_t server = fork();
	if (server < 0) {
		fail(name, "fork");
		return;
	}
	if (server == 0) {
		close(to_server[1]);
		close(to_client[0]);
		unsigned char c;
		/* Echo each byte plus one until the client closes its end. */
		while (read(to_server[0], &c, 1) == 1) {
			c++;
			if (write(to_client[1], &c, 1) != 1)
				_exit(1);
		}
		_exit(0);
	}
	close(to_server[0]);
	close(to_client[1]);
	unsigned char i = 0;
	long wrong = 0;
	TIME(samples, SAMPLES, overhead, 1, {
		unsigned char reply = 0;
		if (write(to_server[1], &i, 1) != 1 || read(to_client[0], &reply, 1) != 1 ||
		    reply != (unsigned char)(i + 1))
			wrong++;
		i++;
	});
	close(to_server[1]);
	int status = 0;
	pid_t ended = waitpid(server, &status, 0);
	close(to_client[0]);
	if (wrong != 0 || ended != server || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		printf("bench %s error=\"%ld wrong replies, server status %#x\"\n", name, wrong,
		       status);
		return;
	}
	report(name,
	       "one-byte pipe round trip to a process on the same CPU (write, its read and write "
	       "back, read)",
	       samples, SAMPLES, overhead);
}

static void page_fault_anon(uint64_t overhead)
{
	const char *name = "page_fault_anon";
	size_t len = (size_t)(WARMUP + FAULT_PAGES) * PAGE;
	char *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED) {
		fail(name, "mmap");
		return;
	}
	/* 4 KiB pages only: with transparent huge pages a first touch could fill 2 MiB. */
	if (madvise(base, len, MADV_NOHUGEPAGE) < 0) {
		fail(name, "madvise");
		return;
	}
	char *next = base;
	TIME(samples, FAULT_PAGES, overhead, 1, {
		*(volatile char *)next = 1;
		next += PAGE;
	});
	if (munmap(base, len) < 0) {
		fail(name, "munmap");
		return;
	}
	report(name,
	       "first write to a 4 KiB page of fresh anonymous memory (MADV_NOHUGEPAGE), zeroing "
	       "included",
	       samples, FAULT_PAGES, overhead);
}

static void kalloc_free_64(uint64_t overhead)
{
	TIME(samples, SAMPLES, overhead, 1, {
		void *p = malloc(64);
		/* The pointer escapes, so the compiler cannot drop the pair. */
		__asm__ volatile("" : : "r"(p) : "memory");
		free(p);
	});
	report("kalloc_free_64",
	       "glibc malloc(64) + free in user space (not a kernel allocator)", samples, SAMPLES,
	       overhead);
}

/* Prints the first line of the file `name` in directory `dir` as
 * `linux-bench <prefix><name>="<line>"`. */
static void print_file_line(const char *prefix, int dir, const char *name)
{
	char line[512] = "";
	int fd = openat(dir, name, O_RDONLY);
	FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
	if (f) {
		if (!fgets(line, sizeof line, f))
			line[0] = 0;
		fclose(f);
	}
	line[strcspn(line, "\n")] = 0;
	printf("linux-bench %s%s=\"%s\"\n", prefix, name, f ? line : "(unreadable)");
}

/* The kernel, its command line, the CPU's ERMS flag, memory auto-init and mitigations. */
static void describe(void)
{
	struct utsname u;
	if (uname(&u) == 0)
		printf("linux-bench kernel=\"%s %s\"\n", u.release, u.version);
	int proc = open("/proc", O_RDONLY | O_DIRECTORY);
	print_file_line("", proc, "cmdline");
	close(proc);

	int erms = 0;
	char line[4096];
	FILE *f = fopen("/proc/cpuinfo", "r");
	while (f && fgets(line, sizeof line, f)) {
		if (strncmp(line, "flags", 5) == 0) {
			erms = strstr(line, " erms") != NULL;
			break;
		}
	}
	if (f)
		fclose(f);
	printf("linux-bench erms=\"%s\"\n", erms ? "yes" : "no");

	/* The boot log's "mem auto-init:" line says whether pages are zeroed when allocated. */
	static char log[1 << 20];
	int n = klogctl(3 /* SYSLOG_ACTION_READ_ALL */, log, sizeof log - 1);
	if (n > 0) {
		log[n] = 0;
		char *at = strstr(log, "mem auto-init:");
		if (at) {
			at[strcspn(at, "\n")] = 0;
			printf("linux-bench mem_auto_init=\"%s\"\n", at + strlen("mem auto-init:") + 1);
		}
	}

	/* Each file of the vulnerabilities directory, in name order. */
	struct dirent **entries;
	int count = scandir("/sys/devices/system/cpu/vulnerabilities", &entries, NULL, alphasort);
	int dir = open("/sys/devices/system/cpu/vulnerabilities", O_RDONLY | O_DIRECTORY);
	for (int i = 0; i < count; i++) {
		if (entries[i]->d_name[0] != '.')
			print_file_line("vulnerability.", dir, entries[i]->d_name);
		free(entries[i]);
	}
	if (count >= 0)
		free(entries);
	if (dir >= 0)
		close(dir);
	fflush(stdout);
}

int main(void)
{
	/* Mounts and the power-off only as the initramfs's init, never on a host. */
	int init = getpid() == 1;
	/* The console, if the kernel could not open it for us. */
	if (init && fcntl(1, F_GETFD) < 0) {
		mkdir("/dev", 0755);
		mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
		int fd = open("/dev/console", O_RDWR);
		if (fd >= 0) {
			dup2(fd, 0);
			dup2(fd, 1);
			dup2(fd, 2);
		}
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (init) {
		mkdir("/proc", 0555);
		mkdir("/sys", 0555);
		mount("proc", "/proc", "proc", 0, NULL);
		mount("sysfs", "/sys", "sysfs", 0, NULL);
	}
	describe();

	cpu_set_t cpu0;
	CPU_ZERO(&cpu0);
	CPU_SET(0, &cpu0);
	if (sched_setaffinity(0, sizeof cpu0, &cpu0) < 0) {
		printf("linux-bench error=\"sched_setaffinity: %s\"\n", strerror(errno));
	} else {
		uint64_t overhead = tsc_overhead(1000);
		printf("bench timing_overhead unit=tsc value=%llu\n", (unsigned long long)overhead);
		null_syscall(overhead);
		sched_yield_switch(overhead);
		ipc_call_reply(overhead);
		page_fault_anon(overhead);
		kalloc_free_64(overhead);
		printf("linux-bench done\n");
	}
	fflush(stdout);
	if (!init)
		return 0;
	sync();
	reboot(RB_POWER_OFF);
	printf("linux-bench error=\"reboot(RB_POWER_OFF): %s\"\n", strerror(errno));
	fflush(stdout);
	for (;;)
		pause();
}
