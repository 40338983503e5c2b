/* Prometheus text-format escaping and numbers: see mw_promtext.h. */
#include "metrics/mw_promtext.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mw_promtext_label_value(mw_buf *b, const char *s, size_t n) {
  size_t i = 0, run = 0;
  for (; i < n; i++) {
    const char *esc = s[i] == '\\' ? "\\\\" : s[i] == '"' ? "\\\"" : s[i] == '\n' ? "\\n" : NULL;
    if (!esc) continue;
    mw_buf_put(b, s + run, i - run);
    mw_buf_puts(b, esc);
    run = i + 1;
  }
  mw_buf_put(b, s + run, n - run);
}

void mw_promtext_help(mw_buf *b, const char *s) {
  for (; *s; s++) {
    if (*s == '\\') mw_buf_puts(b, "\\\\");
    else if (*s == '\n') mw_buf_puts(b, "\\n");
    else mw_buf_put(b, s, 1);
  }
}

void mw_promtext_value(mw_buf *b, double v) {
  if (isnan(v)) {
    mw_buf_puts(b, "NaN");
  } else if (isinf(v)) {
    mw_buf_puts(b, v > 0 ? "+Inf" : "-Inf");
  } else if (v == floor(v) && fabs(v) < 1e15) {
    mw_buf_printf(b, "%.0f", v);
  } else {
    char tmp[40];
    for (int prec = 6; prec <= 17; prec++) {
      snprintf(tmp, sizeof tmp, "%.*g", prec, v);
      if (strtod(tmp, NULL) == v) break;
    }
    mw_buf_puts(b, tmp);
  }
}
