/* Deterministic re-encoding of serialized messages: see mw_codec_canonical
 * in mw_codec.h. */
#include <stdio.h>

#include "codec/mw_codec.h"
#include "upb/decode.h"
#include "upb/encode.h"
#include "upb/reflection.h"

/* The codec's own nesting bound (mw_codec.h), above upb's default of 64. */
#define DEPTH 100

const char *mw_codec_canonical(const char *buf, size_t len, const upb_MessageDef *m,
                               upb_Arena *a, size_t *out_len, char *err, size_t errlen) {
  const upb_MiniTable *mt = upb_MessageDef_MiniTable(m);
  upb_Message *msg = upb_Message_New(m, a);
  if (!msg) {
    if (err && errlen) snprintf(err, errlen, "out of memory");
    return NULL;
  }
  upb_DecodeStatus ds = upb_Decode(len ? buf : "", len, msg, mt, NULL,
                                   UPB_DECODE_MAXDEPTH(DEPTH), a);
  if (ds != kUpb_DecodeStatus_Ok) {
    if (err && errlen)
      snprintf(err, errlen, "cannot decode %s: %s", upb_MessageDef_FullName(m),
               ds == kUpb_DecodeStatus_OutOfMemory ? "out of memory"
               : ds == kUpb_DecodeStatus_BadUtf8   ? "invalid UTF-8 in a string field"
               : ds == kUpb_DecodeStatus_MaxDepthExceeded ? "nesting too deep"
                                                          : "malformed wire data");
    return NULL;
  }
  char *out = NULL;
  size_t n = 0;
  upb_EncodeStatus es = upb_Encode(msg, mt, kUpb_EncodeOption_Deterministic |
                                   UPB_ENCODE_MAXDEPTH(DEPTH), a, &out, &n);
  if (es != kUpb_EncodeStatus_Ok) {
    if (err && errlen)
      snprintf(err, errlen, "cannot encode %s: %s", upb_MessageDef_FullName(m),
               es == kUpb_EncodeStatus_OutOfMemory ? "out of memory" : "nesting too deep");
    return NULL;
  }
  *out_len = n;
  return out ? out : "";
}
