/*
 * errors.c - the message of each TOTPD_ERR_* code: the one copy, which the
 * Python layer shows too (totpd.otp.NativeError).
 */
#include "totpd_core.h"

#define TOTPD_STR(x) #x
#define TOTPD_XSTR(x) TOTPD_STR(x)

const char *totpd_strerror(int code) {
    switch (code) {
        case TOTPD_OK: return "no error";
        case TOTPD_ERR_ALGORITHM: return "unknown algorithm";
        case TOTPD_ERR_DIGITS: return "digits must be 6, 7 or 8";
        case TOTPD_ERR_OFFSETS: return "key offsets are inconsistent with the key buffer";
        case TOTPD_ERR_WINDOW: return "window must be at most " TOTPD_XSTR(TOTPD_MAX_WINDOW);
        case TOTPD_ERR_KEY_INDEX: return "a key index is outside the key table";
        case TOTPD_ERR_COUNTER: return "counter + window does not fit in a signed 64-bit integer";
        case TOTPD_ERR_PATH: return "CPU path unknown or not supported by this CPU";
        case TOTPD_ERR_NULL: return "a required buffer is missing";
        case TOTPD_ERR_RANGE: return "key or pair range outside its table";
        default: return "unknown error code";
    }
}
