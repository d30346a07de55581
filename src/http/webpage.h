/* webpage.h — the web page: the files under --web-root, served at every path
 * outside the API (GET and HEAD). Must not hold API logic. */
#ifndef BX_HTTP_WEBPAGE_H
#define BX_HTTP_WEBPAGE_H

#include "http/call.h"

/* Opens the web root once, at start-up (before the loops start). Returns -1
 * when it is not a readable directory. */
int webpage_open(const char *root);
/* Answers c from the web root: the file, 304, or a JSON error (400 for a NUL or
 * control character in the path, 404 for anything that is not a regular file
 * beneath the root, symlinks included, 405 for other methods). Every answer
 * carries X-Request-Id and the page's security headers. */
void webpage_serve(struct call *c);

#endif
