/* The project's own .proto files (proto/: google/rpc/status.proto and
 * error_details.proto, google/api/http.proto and annotations.proto for
 * REST rules) and those of the standard services (gRPC's
 * grpc/health/v1/health.proto, grpc/reflection/{v1,v1alpha}/reflection.proto),
 * compiled into the binary so that services can import them and the
 * built-in services can be served wherever the binary is installed. protoc reads imports from
 * directories, so they are written once per process into a private
 * directory that is removed at exit. */
#ifndef MW_PROTOS_H
#define MW_PROTOS_H

/* The directory holding them: $MOONWIRE_PROTO_DIR when set (for working on
 * them without rebuilding; it must then hold both sets), else the private copy, written on first use.
 * NULL when it cannot be written (the include path is then just missing:
 * an import of them fails with protoc's own message). Thread-safe. */
const char *mw_protos_dir(void);

#endif
