/* Status codes: one enum with gRPC's numbering (grpc_status_code), one table
 * of names. Every layer names codes through it; Lua sees the same names as
 * mw.OK ... mw.UNAUTHENTICATED. */
#ifndef MW_STATUS_H
#define MW_STATUS_H

typedef enum mw_status {
  MW_STATUS_OK = 0,
  MW_STATUS_CANCELLED = 1,
  MW_STATUS_UNKNOWN = 2,
  MW_STATUS_INVALID_ARGUMENT = 3,
  MW_STATUS_DEADLINE_EXCEEDED = 4,
  MW_STATUS_NOT_FOUND = 5,
  MW_STATUS_ALREADY_EXISTS = 6,
  MW_STATUS_PERMISSION_DENIED = 7,
  MW_STATUS_RESOURCE_EXHAUSTED = 8,
  MW_STATUS_FAILED_PRECONDITION = 9,
  MW_STATUS_ABORTED = 10,
  MW_STATUS_OUT_OF_RANGE = 11,
  MW_STATUS_UNIMPLEMENTED = 12,
  MW_STATUS_INTERNAL = 13,
  MW_STATUS_UNAVAILABLE = 14,
  MW_STATUS_DATA_LOSS = 15,
  MW_STATUS_UNAUTHENTICATED = 16,
  MW_STATUS_COUNT = 17
} mw_status;

/* "NOT_FOUND" for 5; "UNKNOWN" for a number outside the table. */
const char *mw_status_name(int code);
/* Parses a name in any case ("invalid_argument"); -1 when unknown. */
int mw_status_parse(const char *name);

#endif
