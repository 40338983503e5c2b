/* The escapings and number format of the Prometheus text exposition
 * format, appended to a mw_buf (base/mw_buf.h). They differ from JSON's:
 * the text format escapes only backslash, quote (label values) and
 * newline, and passes every other byte through. */
#ifndef MW_PROMTEXT_H
#define MW_PROMTEXT_H

#include <stddef.h>

#include "base/mw_buf.h"

/* A label value of the text format: \ " and newline escaped. */
void mw_promtext_label_value(mw_buf *b, const char *s, size_t n);
/* HELP text: \ and newline escaped. */
void mw_promtext_help(mw_buf *b, const char *s);
/* A sample value as Prometheus writes it: integers without a fraction,
 * +Inf, -Inf, NaN, else the shortest form that reads back the same. */
void mw_promtext_value(mw_buf *b, double v);

#endif
