/* Per-thread alarms: a thread says "interrupt me if I am still busy at time
 * T", and when T passes with the alarm still armed, one watchdog thread
 * (shared by the process, started on first use) sends that thread a signal
 * whose handler runs the function given to mw_alarm_init, on that thread.
 *
 * Why a signal: the work being bounded (a Lua handler) runs on the armed
 * thread, and what stops it (lua_sethook) is safe from a signal handler on
 * that thread, not from another thread while the VM runs. Arming and
 * disarming are two atomic stores and a load, no system call: the
 * watchdog only needs waking when an alarm is due before the time it
 * already sleeps to, which under steady load is never (see mw_alarm.c).
 *
 * The signal is installed with SA_RESTART, so system calls the thread is in
 * when it lands restart; each arming fires at most once. */
#ifndef MW_ALARM_H
#define MW_ALARM_H

typedef struct mw_alarm mw_alarm;

/* Installs fn as what the alarm's signal runs (async-signal context: it may
 * only do what a signal handler may). Once per process, before any alarm is
 * armed; later calls change nothing. Returns 0, or -1 with errno set. */
int mw_alarm_init(void (*fn)(void));

/* This thread's alarm, registered with the watchdog on first use and
 * unregistered when the thread exits. NULL when out of memory, when the
 * watchdog thread cannot start or before mw_alarm_init: the caller then
 * goes without (and must check by other means). */
mw_alarm *mw_alarm_self(void);

/* Arms a for `due` (mw_now() seconds); 0 disarms. Only a's own thread arms
 * it. Returns what was armed before, so that a nested arming can put it
 * back. */
double mw_alarm_arm(mw_alarm *a, double due);

#endif
