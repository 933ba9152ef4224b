// The cost of starting a program, apart from what it then does (bench/analysis.md,
// "Pod setup at 1,000 pods"):
//
//   start_cost time N INPUT PROGRAM...   fork, exec and wait for each PROGRAM N
//                                        times, the programs alternating, with
//                                        INPUT on stdin and CNI_COMMAND=VERSION
//                                        set; prints p50/p90/p99 in ms each
//   start_cost cpuid PROGRAM [ARG...]    single-steps one run of PROGRAM and
//                                        counts the instructions it executes in
//                                        user space and the cpuid among them
//
// cpuid is counted because on a VM each one traps to the hypervisor (several
// microseconds), and C libraries run it at start to choose their string
// functions. Build: cc -O2 -o target/bench/start_cost bench/tools/start_cost.c
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double ms_since(const struct timespec *start)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - start->tv_sec) * 1e3 + (now.tv_nsec - start->tv_nsec) / 1e6;
}

static int time_starts(int runs, const char *input, char **programs, int count)
{
	double *ms = calloc((size_t)runs * count, sizeof(*ms));
	char *env[] = { "CNI_COMMAND=VERSION", NULL };
	if (!ms)
		return 1;
	for (int i = 0; i < runs; i++) {
		for (int p = 0; p < count; p++) {
			int in = open(input, O_RDONLY), out = open("/dev/null", O_WRONLY);
			struct timespec start;
			int status;
			if (in < 0 || out < 0) {
				perror(input);
				return 1;
			}
			clock_gettime(CLOCK_MONOTONIC, &start);
			pid_t child = fork();
			if (child == 0) {
				char *argv[] = { programs[p], NULL };
				dup2(in, 0);
				dup2(out, 1);
				execve(programs[p], argv, env);
				_exit(127);
			}
			waitpid(child, &status, 0);
			ms[p * runs + i] = ms_since(&start);
			close(in);
			close(out);
			if (!WIFEXITED(status) || WEXITSTATUS(status) == 127) {
				fprintf(stderr, "%s did not run\n", programs[p]);
				return 1;
			}
		}
	}
	for (int p = 0; p < count; p++) {
		double *own = ms + p * runs;
		qsort(own, runs, sizeof(*own), by_value);
		printf("%-60s p50 %.3f ms  p90 %.3f  p99 %.3f\n", programs[p], own[runs / 2],
		       own[runs * 9 / 10], own[runs * 99 / 100]);
	}
	free(ms);
	return 0;
}

static int count_cpuid(char **argv)
{
	long steps = 0, cpuid = 0;
	int status;
	pid_t child = fork();
	if (child == 0) {
		ptrace(PTRACE_TRACEME, 0, NULL, NULL);
		execv(argv[0], argv);
		_exit(127);
	}
	waitpid(child, &status, 0);
	while (WIFSTOPPED(status)) {
		struct user_regs_struct regs;
		ptrace(PTRACE_GETREGS, child, NULL, &regs);
		errno = 0;
		long word = ptrace(PTRACE_PEEKTEXT, child, (void *)regs.rip, NULL);
		// cpuid is the two bytes 0f a2.
		if (errno == 0 && (word & 0xffff) == 0xa20f)
			cpuid++;
		steps++;
		if (ptrace(PTRACE_SINGLESTEP, child, NULL, NULL) < 0)
			break;
		waitpid(child, &status, 0);
	}
	printf("%s: %ld instructions, %ld cpuid\n", argv[0], steps, cpuid);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 5 && strcmp(argv[1], "time") == 0)
		return time_starts(atoi(argv[2]), argv[3], argv + 4, argc - 4);
	if (argc >= 3 && strcmp(argv[1], "cpuid") == 0)
		return count_cpuid(argv + 2);
	fprintf(stderr,
		"usage: start_cost time N INPUT PROGRAM... | start_cost cpuid PROGRAM [ARG...]\n");
	return 2;
}
