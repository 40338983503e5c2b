/* The WebSocket wire (RFC 6455) as pure functions of bytes: the opening
 * handshake's accept key, frame heads, masking, close payloads and UTF-8
 * checks. No I/O: http/mw_websocket.c calls them on an upgraded socket,
 * tests/unit/http/test_wsframe.c tests them with the RFC's own examples.
 *
 * The server's side only: frames read are the client's (which must be
 * masked), frames written are the server's (which must not be). */
#ifndef MW_WSFRAME_H
#define MW_WSFRAME_H

#include <stddef.h>
#include <stdint.h>

/* Opcodes (RFC 6455 section 5.2). */
enum {
  MW_WS_CONT = 0x0,
  MW_WS_TEXT = 0x1,
  MW_WS_BINARY = 0x2,
  MW_WS_CLOSE = 0x8,
  MW_WS_PING = 0x9,
  MW_WS_PONG = 0xA,
};

/* Close codes (section 7.4.1) this side sends. */
enum {
  MW_WS_CLOSE_NORMAL = 1000,
  MW_WS_CLOSE_GOING_AWAY = 1001,
  MW_WS_CLOSE_PROTOCOL = 1002,
  MW_WS_CLOSE_BAD_DATA = 1007, /* bad UTF-8, or a message that cannot be decoded */
  MW_WS_CLOSE_TOO_BIG = 1009,
  MW_WS_CLOSE_INTERNAL = 1011,
  /* A call that ended with gRPC status code c closes with 4000 + c (the
   * private range, section 7.4.2); OK closes with 1000. */
  MW_WS_CLOSE_STATUS_BASE = 4000,
};

/* A frame's head, as read. */
typedef struct mw_ws_head {
  int fin;
  int opcode;
  unsigned char mask[4];
  uint64_t len;      /* the payload's length */
  size_t head_len;   /* bytes of the head (2..14) before the payload */
} mw_ws_head;

/* Reads the head of a client frame at buf. Returns 1 with h filled, 0 when
 * buf holds only part of a head, or -1 with *close_code and *why set when
 * the head breaks the rules: reserved bits set (no extension is agreed),
 * an unknown opcode, a control frame fragmented or over 125 bytes, a
 * 64-bit length with its top bit set, or an unmasked frame (section 5.1:
 * a client masks every frame). */
int mw_ws_read_head(const unsigned char *buf, size_t len, mw_ws_head *h, int *close_code,
                    const char **why);

/* XORs len bytes at data with mask, data being at offset bytes into the
 * payload (masking and unmasking are the same operation). */
void mw_ws_unmask(unsigned char *data, size_t len, const unsigned char mask[4], uint64_t offset);

/* Writes the head of an unmasked server frame (FIN set) into out and
 * returns its length (2, 4 or 10). */
size_t mw_ws_put_head(unsigned char out[10], int opcode, uint64_t len);

/* Sec-WebSocket-Accept of a Sec-WebSocket-Key: base64(SHA-1(key + the
 * RFC's GUID)), 28 characters and a NUL into out. */
void mw_ws_accept_key(const char *key, size_t key_len, char out[29]);
/* Whether a Sec-WebSocket-Key is well formed: 16 bytes in base64 (24
 * characters, padded). */
int mw_ws_key_valid(const char *key, size_t key_len);

/* A close frame's payload: the code (0 when it has none), the reason's
 * span; -1 when the payload is 1 byte, the code is one a peer may not
 * send (section 7.4), or the reason is not UTF-8. */
int mw_ws_read_close(const unsigned char *p, size_t len, int *code, const char **reason,
                     size_t *reason_len);
/* The payload of a close with code and reason (cut to fit 125 bytes at a
 * character boundary) into out; returns its length. */
size_t mw_ws_put_close(unsigned char out[125], int code, const char *reason, size_t reason_len);

/* Whether s is valid UTF-8 (no overlongs, surrogates or code points past
 * U+10FFFF), as text frames must be (section 8.1). */
int mw_ws_utf8_valid(const char *s, size_t len);
/* Replaces each byte of s that is not part of a valid UTF-8 sequence by
 * '?', in place, so that any text can go in a text frame. */
void mw_ws_utf8_fix(char *s, size_t len);

#endif
