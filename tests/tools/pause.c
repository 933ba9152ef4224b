// The pod sandbox's process for the containerd test node (image meshlane.test/pause:1),
// doing what Kubernetes' pause does: hold the pod's namespaces, reap the zombies of a
// shared PID namespace, exit 0 on SIGINT/SIGTERM. It runs as PID 1 of its
// container, where signals without a handler are ignored: hence the handlers.
//
//   gcc -static -O2 -Wall -Wextra -Werror -o pause pause.c

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "pid1.h"

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "-v") == 0) {
		puts("pause (meshlane test image)");
		return 0;
	}
	if (getpid() != 1)
		fprintf(stderr, "pause: warning: not PID 1, zombies of others are not mine\n");
	if (pid1_signals(NULL) < 0) {
		perror("pause: sigaction");
		return 1;
	}
	for (;;)
		pause();
}
