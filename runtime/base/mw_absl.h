#ifndef MW_ABSL_H
#define MW_ABSL_H

/* Settings of Abseil, which gRPC core is built on. */

#ifdef __cplusplus
extern "C" {
#endif

/* Turns off Abseil's mutex deadlock detection. Debian builds Abseil without
 * NDEBUG, so every mutex gRPC core takes records its lock-order graph under
 * one global lock: a few thousand instructions per call, for a check meant
 * for Abseil's own debugging. Call before grpc_init(). */
void mw_absl_fast_mutexes(void);

#ifdef __cplusplus
}
#endif

#endif
