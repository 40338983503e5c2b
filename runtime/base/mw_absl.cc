// The one C++ file of the runtime: Abseil's settings have only a C++ API.
#include "base/mw_absl.h"

#include <absl/synchronization/mutex.h>

extern "C" void mw_absl_fast_mutexes(void) {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
}
