/* placeholder replaced below */
#include "sha_internal.h"
