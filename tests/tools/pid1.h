// pid1.h: the signals of a test tool that runs as PID 1 of its container, where a
// signal without a handler is ignored. SIGINT and SIGTERM exit 0; SIGCHLD reaps
// every exited child and, for a tool that counts its children, reports each one.
// Shared by pause.c and node_app.c (images.py rebuilds both when it changes).

#ifndef PID1_H
#define PID1_H

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void (*pid1_reaped)(void);

static void pid1_on_stop(int sig)
{
	(void)sig;
	_exit(0);
}

static void pid1_on_child(int sig)
{
	int saved = errno;

	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		if (pid1_reaped)
			pid1_reaped();
	errno = saved;
}

// One handler; SIGCHLD's restarts interrupted calls and ignores stopped children.
static int pid1_handle(int sig, void (*handler)(int))
{
	struct sigaction action;

	memset(&action, 0, sizeof(action));
	action.sa_handler = handler;
	action.sa_flags = sig == SIGCHLD ? SA_NOCLDSTOP | SA_RESTART : 0;
	sigemptyset(&action.sa_mask);
	return sigaction(sig, &action, NULL);
}

// Installs the handlers; `reaped` (or NULL) runs in the handler once per child.
static int pid1_signals(void (*reaped)(void))
{
	pid1_reaped = reaped;
	if (pid1_handle(SIGINT, pid1_on_stop) < 0 || pid1_handle(SIGTERM, pid1_on_stop) < 0 ||
	    pid1_handle(SIGCHLD, pid1_on_child) < 0)
		return -1;
	return 0;
}

#endif // PID1_H
