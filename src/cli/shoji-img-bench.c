/* placeholder, replaced below */
#include "cli/shoji-img.h"
int img_bench(int argc, char **argv) { (void)argc; (void)argv; return 1; }
