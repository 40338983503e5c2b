/* .proto text from upb defs (mw_protoprint.h). */
#include "schema/mw_protoprint.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "google/protobuf/descriptor.upb.h"
#include "upb/reflection.h"

/* The highest field number, which "max" stands for in extension ranges. */
#define MW_PP_MAX_FIELD 536870911

static void pad(mw_buf *b, int indent) {
  for (int i = 0; i < indent; i++) mw_buf_puts(b, "  ");
}

/* Whether anything in the pool is called exactly name (len bytes). */
static int exists(const upb_DefPool *pool, const char *name, size_t len) {
  char tmp[1024];
  if (len >= sizeof tmp) return 0;
  memcpy(tmp, name, len);
  tmp[len] = '\0';
  return upb_DefPool_FindFileContainingSymbol(pool, tmp) != NULL;
}

/* Appends target (a full name) as written from inside scope (a full name:
 * the message or service where the reference appears). protoc resolves a
 * relative name by looking its first component up in scope, then in each
 * enclosing scope, and takes the first hit; so a suffix of target after a
 * prefix of scope is right when no scope nearer than that prefix has
 * something of the suffix's first component's name. */
static void type_ref(mw_buf *b, const upb_DefPool *pool, const char *scope, const char *target) {
  size_t slen = strlen(scope);
  /* k: the length of the scope prefix tried, innermost first; the cut
   * points are the scope's dots, its end and the empty prefix. */
  size_t k = slen;
  for (;;) {
    int prefix_ok = k == 0 || (strncmp(target, scope, k) == 0 && target[k] == '.');
    if (prefix_ok) {
      const char *rel = k ? target + k + 1 : target;
      const char *dot = strchr(rel, '.');
      size_t first = dot ? (size_t)(dot - rel) : strlen(rel);
      int shadowed = 0;
      /* Every scope nearer than the prefix: scope[0..j) for j > k. */
      for (size_t j = slen; j > k && !shadowed; j--) {
        if (j != slen && scope[j] != '.') continue;
        char name[1024];
        int n = snprintf(name, sizeof name, "%.*s.%.*s", (int)j, scope, (int)first, rel);
        if (n > 0 && (size_t)n < sizeof name && exists(pool, name, (size_t)n)) shadowed = 1;
      }
      if (!shadowed) {
        mw_buf_puts(b, rel);
        return;
      }
    }
    if (k == 0) break;
    do k--;
    while (k > 0 && scope[k] != '.');
  }
  mw_buf_printf(b, ".%s", target);
}

static const char *scalar_name(upb_FieldType t) {
  switch (t) {
    case kUpb_FieldType_Double: return "double";
    case kUpb_FieldType_Float: return "float";
    case kUpb_FieldType_Int64: return "int64";
    case kUpb_FieldType_UInt64: return "uint64";
    case kUpb_FieldType_Int32: return "int32";
    case kUpb_FieldType_Fixed64: return "fixed64";
    case kUpb_FieldType_Fixed32: return "fixed32";
    case kUpb_FieldType_Bool: return "bool";
    case kUpb_FieldType_String: return "string";
    case kUpb_FieldType_Bytes: return "bytes";
    case kUpb_FieldType_UInt32: return "uint32";
    case kUpb_FieldType_SFixed32: return "sfixed32";
    case kUpb_FieldType_SFixed64: return "sfixed64";
    case kUpb_FieldType_SInt32: return "sint32";
    case kUpb_FieldType_SInt64: return "sint64";
    default: return NULL;
  }
}

static const upb_DefPool *field_pool(const upb_FieldDef *f) {
  return upb_FileDef_Pool(upb_FieldDef_File(f));
}

/* The field's type as written from scope. */
static void field_type(mw_buf *b, const upb_FieldDef *f, const char *scope) {
  const char *s = scalar_name(upb_FieldDef_Type(f));
  if (s) {
    mw_buf_puts(b, s);
  } else if (upb_FieldDef_CType(f) == kUpb_CType_Enum) {
    type_ref(b, field_pool(f), scope, upb_EnumDef_FullName(upb_FieldDef_EnumSubDef(f)));
  } else {
    type_ref(b, field_pool(f), scope, upb_MessageDef_FullName(upb_FieldDef_MessageSubDef(f)));
  }
}

/* A string literal with C escapes, as protoc reads them. */
static void quoted(mw_buf *b, const char *s, size_t n) {
  mw_buf_puts(b, "\"");
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') mw_buf_printf(b, "\\%c", c);
    else if (c == '\n') mw_buf_puts(b, "\\n");
    else if (c < 0x20 || c >= 0x7f) mw_buf_printf(b, "\\%03o", c);
    else mw_buf_put(b, (const char *)&c, 1);
  }
  mw_buf_puts(b, "\"");
}

static void float_literal(mw_buf *b, double d) {
  if (isnan(d)) mw_buf_puts(b, "nan");
  else if (isinf(d)) mw_buf_puts(b, d > 0 ? "inf" : "-inf");
  else mw_buf_printf(b, "%.17g", d);
}

/* proto2's [default = ...]. */
static void default_value(mw_buf *b, const upb_FieldDef *f) {
  upb_MessageValue v = upb_FieldDef_Default(f);
  switch (upb_FieldDef_CType(f)) {
    case kUpb_CType_Bool: mw_buf_puts(b, v.bool_val ? "true" : "false"); break;
    case kUpb_CType_Float: float_literal(b, v.float_val); break;
    case kUpb_CType_Double: float_literal(b, v.double_val); break;
    case kUpb_CType_Int32: mw_buf_printf(b, "%" PRId32, v.int32_val); break;
    case kUpb_CType_UInt32: mw_buf_printf(b, "%" PRIu32, v.uint32_val); break;
    case kUpb_CType_Int64: mw_buf_printf(b, "%" PRId64, v.int64_val); break;
    case kUpb_CType_UInt64: mw_buf_printf(b, "%" PRIu64, v.uint64_val); break;
    case kUpb_CType_String:
    case kUpb_CType_Bytes: quoted(b, v.str_val.data, v.str_val.size); break;
    case kUpb_CType_Enum: {
      const upb_EnumValueDef *ev =
          upb_EnumDef_FindValueByNumber(upb_FieldDef_EnumSubDef(f), v.int32_val);
      if (ev) mw_buf_puts(b, upb_EnumValueDef_Name(ev));
      else mw_buf_printf(b, "%" PRId32, v.int32_val);
      break;
    }
    default: break;
  }
}

/* protoc's default json_name: the name in lowerCamelCase. */
static int default_json_name(const char *name, const char *json) {
  char want[256];
  size_t n = 0;
  int up = 0;
  for (const char *p = name; *p && n + 1 < sizeof want; p++) {
    if (*p == '_') {
      up = 1;
      continue;
    }
    want[n++] = up && *p >= 'a' && *p <= 'z' ? (char)(*p - 'a' + 'A') : *p;
    up = 0;
  }
  want[n] = '\0';
  return strcmp(want, json) == 0;
}

/* `[deprecated = true, ...]` for what a descriptor keeps of a field's
 * options and its json_name. */
static void field_options(mw_buf *b, const upb_FieldDef *f, int proto2) {
  const char *sep = " [";
  if (proto2 && upb_FieldDef_HasDefault(f) && !upb_FieldDef_IsRepeated(f) &&
      !upb_FieldDef_IsSubMessage(f)) {
    mw_buf_printf(b, "%sdefault = ", sep);
    default_value(b, f);
    sep = ", ";
  }
  if (upb_FieldDef_HasJsonName(f) &&
      !default_json_name(upb_FieldDef_Name(f), upb_FieldDef_JsonName(f))) {
    mw_buf_printf(b, "%sjson_name = ", sep);
    quoted(b, upb_FieldDef_JsonName(f), strlen(upb_FieldDef_JsonName(f)));
    sep = ", ";
  }
  if (upb_FieldDef_HasOptions(f)) {
    const google_protobuf_FieldOptions *o = upb_FieldDef_Options(f);
    if (google_protobuf_FieldOptions_has_packed(o)) {
      mw_buf_printf(b, "%spacked = %s", sep, google_protobuf_FieldOptions_packed(o) ? "true" : "false");
      sep = ", ";
    }
    if (google_protobuf_FieldOptions_deprecated(o)) {
      mw_buf_printf(b, "%sdeprecated = true", sep);
      sep = ", ";
    }
  }
  if (sep[0] == ',') mw_buf_puts(b, "]");
}

/* One field declaration; label: whether to write its label (not inside a
 * oneof). scope: where its type names are resolved from. */
static void field(mw_buf *b, const upb_FieldDef *f, int indent, const char *scope, int label) {
  int proto2 = upb_FileDef_Syntax(upb_FieldDef_File(f)) == kUpb_Syntax_Proto2;
  pad(b, indent);
  if (upb_FieldDef_IsMap(f)) {
    const upb_MessageDef *entry = upb_FieldDef_MessageSubDef(f);
    mw_buf_puts(b, "map<");
    field_type(b, upb_MessageDef_FindFieldByNumber(entry, 1), scope);
    mw_buf_puts(b, ", ");
    field_type(b, upb_MessageDef_FindFieldByNumber(entry, 2), scope);
    mw_buf_puts(b, "> ");
  } else {
    if (label) {
      if (upb_FieldDef_IsRepeated(f)) mw_buf_puts(b, "repeated ");
      else if (upb_FieldDef_IsRequired(f)) mw_buf_puts(b, "required ");
      else if (proto2 || upb_FieldDef_IsExtension(f)) mw_buf_puts(b, "optional ");
      else if (upb_FieldDef_RealContainingOneof(f) == NULL &&
               upb_FieldDef_ContainingOneof(f) != NULL)
        mw_buf_puts(b, "optional "); /* proto3 optional: a synthetic oneof */
    }
    field_type(b, f, scope);
    mw_buf_puts(b, " ");
  }
  mw_buf_printf(b, "%s = %" PRIu32, upb_FieldDef_Name(f), upb_FieldDef_Number(f));
  field_options(b, f, proto2);
  mw_buf_puts(b, ";\n");
}

/* Extensions declared in one scope, grouped by the message they extend,
 * in declaration order. */
typedef const upb_FieldDef *(*ext_at)(const void *owner, int i);

static const upb_FieldDef *msg_ext(const void *m, int i) {
  return upb_MessageDef_NestedExtension(m, i);
}
static const upb_FieldDef *file_ext(const void *f, int i) {
  return upb_FileDef_TopLevelExtension(f, i);
}

static void extensions(mw_buf *b, ext_at at, const void *owner, int n, int indent,
                       const char *scope) {
  for (int i = 0; i < n; i++) {
    const upb_MessageDef *base = upb_FieldDef_ContainingType(at(owner, i));
    int seen = 0;
    for (int j = 0; j < i && !seen; j++) seen = upb_FieldDef_ContainingType(at(owner, j)) == base;
    if (seen) continue;
    pad(b, indent);
    mw_buf_puts(b, "extend ");
    type_ref(b, field_pool(at(owner, i)), scope, upb_MessageDef_FullName(base));
    mw_buf_puts(b, " {\n");
    for (int j = i; j < n; j++)
      if (upb_FieldDef_ContainingType(at(owner, j)) == base)
        field(b, at(owner, j), indent + 1, scope, 1);
    pad(b, indent);
    mw_buf_puts(b, "}\n");
  }
}

void mw_protoprint_enum(mw_buf *b, const upb_EnumDef *e, int indent) {
  pad(b, indent);
  mw_buf_printf(b, "enum %s {\n", upb_EnumDef_Name(e));
  if (upb_EnumDef_HasOptions(e) && google_protobuf_EnumOptions_allow_alias(upb_EnumDef_Options(e))) {
    pad(b, indent + 1);
    mw_buf_puts(b, "option allow_alias = true;\n");
  }
  for (int i = 0; i < upb_EnumDef_ValueCount(e); i++) {
    const upb_EnumValueDef *v = upb_EnumDef_Value(e, i);
    pad(b, indent + 1);
    mw_buf_printf(b, "%s = %" PRId32, upb_EnumValueDef_Name(v), upb_EnumValueDef_Number(v));
    if (upb_EnumValueDef_HasOptions(v) &&
        google_protobuf_EnumValueOptions_deprecated(upb_EnumValueDef_Options(v)))
      mw_buf_puts(b, " [deprecated = true]");
    mw_buf_puts(b, ";\n");
  }
  pad(b, indent);
  mw_buf_puts(b, "}\n");
}

void mw_protoprint_message(mw_buf *b, const upb_MessageDef *m, int indent) {
  const char *scope = upb_MessageDef_FullName(m);
  pad(b, indent);
  mw_buf_printf(b, "message %s {\n", upb_MessageDef_Name(m));
  /* Fields in declaration order; a oneof where its first field is. */
  for (int i = 0; i < upb_MessageDef_FieldCount(m); i++) {
    const upb_FieldDef *f = upb_MessageDef_Field(m, i);
    const upb_OneofDef *o = upb_FieldDef_RealContainingOneof(f);
    if (!o) {
      field(b, f, indent + 1, scope, 1);
      continue;
    }
    if (upb_OneofDef_Field(o, 0) != f) continue;
    pad(b, indent + 1);
    mw_buf_printf(b, "oneof %s {\n", upb_OneofDef_Name(o));
    for (int j = 0; j < upb_OneofDef_FieldCount(o); j++)
      field(b, upb_OneofDef_Field(o, j), indent + 2, scope, 0);
    pad(b, indent + 1);
    mw_buf_puts(b, "}\n");
  }
  for (int i = 0; i < upb_MessageDef_ExtensionRangeCount(m); i++) {
    const upb_ExtensionRange *r = upb_MessageDef_ExtensionRange(m, i);
    int32_t start = upb_ExtensionRange_Start(r), end = upb_ExtensionRange_End(r) - 1;
    pad(b, indent + 1);
    if (end == start) mw_buf_printf(b, "extensions %" PRId32 ";\n", start);
    else if (end >= MW_PP_MAX_FIELD) mw_buf_printf(b, "extensions %" PRId32 " to max;\n", start);
    else mw_buf_printf(b, "extensions %" PRId32 " to %" PRId32 ";\n", start, end);
  }
  for (int i = 0; i < upb_MessageDef_NestedMessageCount(m); i++) {
    const upb_MessageDef *n = upb_MessageDef_NestedMessage(m, i);
    if (!upb_MessageDef_IsMapEntry(n)) mw_protoprint_message(b, n, indent + 1);
  }
  for (int i = 0; i < upb_MessageDef_NestedEnumCount(m); i++)
    mw_protoprint_enum(b, upb_MessageDef_NestedEnum(m, i), indent + 1);
  extensions(b, msg_ext, m, upb_MessageDef_NestedExtensionCount(m), indent + 1, scope);
  pad(b, indent);
  mw_buf_puts(b, "}\n");
}

static void method_in(mw_buf *b, const upb_MethodDef *m, int indent, const char *scope) {
  const upb_DefPool *pool = upb_FileDef_Pool(upb_ServiceDef_File(upb_MethodDef_Service(m)));
  pad(b, indent);
  mw_buf_printf(b, "rpc %s(%s", upb_MethodDef_Name(m),
                upb_MethodDef_ClientStreaming(m) ? "stream " : "");
  type_ref(b, pool, scope, upb_MessageDef_FullName(upb_MethodDef_InputType(m)));
  mw_buf_printf(b, ") returns (%s", upb_MethodDef_ServerStreaming(m) ? "stream " : "");
  type_ref(b, pool, scope, upb_MessageDef_FullName(upb_MethodDef_OutputType(m)));
  mw_buf_puts(b, ")");
  if (upb_MethodDef_HasOptions(m) &&
      google_protobuf_MethodOptions_deprecated(upb_MethodDef_Options(m)))
    mw_buf_puts(b, " {\n"), pad(b, indent + 1), mw_buf_puts(b, "option deprecated = true;\n"),
        pad(b, indent), mw_buf_puts(b, "}\n");
  else
    mw_buf_puts(b, ";\n");
}

void mw_protoprint_method(mw_buf *b, const upb_MethodDef *m, int indent) {
  method_in(b, m, indent, upb_ServiceDef_FullName(upb_MethodDef_Service(m)));
}

void mw_protoprint_service(mw_buf *b, const upb_ServiceDef *s, int indent) {
  pad(b, indent);
  mw_buf_printf(b, "service %s {\n", upb_ServiceDef_Name(s));
  for (int i = 0; i < upb_ServiceDef_MethodCount(s); i++)
    method_in(b, upb_ServiceDef_Method(s, i), indent + 1, upb_ServiceDef_FullName(s));
  pad(b, indent);
  mw_buf_puts(b, "}\n");
}

void mw_protoprint_file(mw_buf *b, const upb_FileDef *f) {
  mw_buf_printf(b, "syntax = \"%s\";\n",
                upb_FileDef_Syntax(f) == kUpb_Syntax_Proto3 ? "proto3" : "proto2");
  const char *pkg = upb_FileDef_Package(f);
  if (pkg && *pkg) mw_buf_printf(b, "\npackage %s;\n", pkg);
  if (upb_FileDef_DependencyCount(f) > 0) mw_buf_puts(b, "\n");
  for (int i = 0; i < upb_FileDef_DependencyCount(f); i++) {
    const char *name = upb_FileDef_Name(upb_FileDef_Dependency(f, i));
    int pub = 0;
    for (int j = 0; j < upb_FileDef_PublicDependencyCount(f); j++)
      pub |= upb_FileDef_PublicDependency(f, j) == upb_FileDef_Dependency(f, i);
    mw_buf_printf(b, "import %s\"%s\";\n", pub ? "public " : "", name);
  }
  for (int i = 0; i < upb_FileDef_TopLevelMessageCount(f); i++) {
    mw_buf_puts(b, "\n");
    mw_protoprint_message(b, upb_FileDef_TopLevelMessage(f, i), 0);
  }
  for (int i = 0; i < upb_FileDef_TopLevelEnumCount(f); i++) {
    mw_buf_puts(b, "\n");
    mw_protoprint_enum(b, upb_FileDef_TopLevelEnum(f, i), 0);
  }
  if (upb_FileDef_TopLevelExtensionCount(f) > 0) {
    mw_buf_puts(b, "\n");
    extensions(b, file_ext, f, upb_FileDef_TopLevelExtensionCount(f), 0, pkg ? pkg : "");
  }
  for (int i = 0; i < upb_FileDef_ServiceCount(f); i++) {
    mw_buf_puts(b, "\n");
    mw_protoprint_service(b, upb_FileDef_Service(f, i), 0);
  }
}
