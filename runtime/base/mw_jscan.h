/* A JSON scanner for C code that only needs to find things in a JSON text
 * (the admin API's request bodies), not to build values: where one value
 * ends, the elements of an array, a member of an object, a string's text.
 * Structure is checked (brackets, strings, escapes, nesting up to
 * MW_JSCAN_MAX_DEPTH); numbers and literals only as runs of their
 * characters. Callers that need the value itself hand the text on (the
 * stub engine decodes it with the Lua JSON decoder). */
#ifndef MW_JSCAN_H
#define MW_JSCAN_H

#include <stddef.h>

#define MW_JSCAN_MAX_DEPTH 64

/* Skips white space from p; returns the first other byte (end if none). */
const char *mw_jscan_ws(const char *p, const char *end);
/* The end of the value that starts at p (white space before it skipped),
 * or NULL when it is not well formed. */
const char *mw_jscan_value(const char *p, const char *end);
/* Calls fn with each element of the array at p (start and end of its
 * text); returns the number of elements, or -1 when p holds no well-formed
 * array or fn returned nonzero. */
int mw_jscan_array(const char *p, const char *end,
                   int (*fn)(void *ud, const char *v, const char *vend), void *ud);
/* The value of member key of the object at p: 1 with *v and *vend set, 0
 * when absent, -1 when p holds no well-formed object. */
int mw_jscan_member(const char *p, const char *end, const char *key, const char **v,
                    const char **vend);
/* The text of the JSON string v..vend into out (NUL-terminated, cap
 * bytes; \uXXXX escapes made UTF-8); returns its length, or -1 when v is
 * not a string or it does not fit. */
long mw_jscan_string(const char *v, const char *vend, char *out, size_t cap);

#endif
