// The pod sandbox's process for the containerd test node (image meshlane.test/pause:1),
// doing what Kubernetes' pause does: hold the pod's namespaces, reap the zombies of a
// shared PID namespace, exit 0 on SIGINT/SIGTERM. It runs as PID 1 of its
// container, where signals without a handler are ignored: hence the handlers.
//
//   gcc -static -O2 -Wall -Wextra -Werror -o pause pause.c

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig)
{
	(void)sig;
	_exit(0);
}

static void on_child(int sig)
{
	int saved = errno;

	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	errno = saved;
}

static int handle(int sig, void (*handler)(int))
{
	struct sigaction action;

	memset(&action, 0, sizeof(action));
	action.sa_handler = handler;
	action.sa_flags = sig == SIGCHLD ? SA_NOCLDSTOP | SA_RESTART : 0;
	sigemptyset(&action.sa_mask);
	return sigaction(sig, &action, NULL);
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "-v") == 0) {
		puts("pause (meshlane test image)");
		return 0;
	}
	if (getpid() != 1)
		fprintf(stderr, "pause: warning: not PID 1, zombies of others are not mine\n");
	if (handle(SIGINT, on_stop) < 0 || handle(SIGTERM, on_stop) < 0 ||
	    handle(SIGCHLD, on_child) < 0) {
		perror("pause: sigaction");
		return 1;
	}
	for (;;)
		pause();
}
