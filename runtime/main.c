#include <stdio.h>
int main(void) { puts("moonwire " MW_VERSION); return 0; }
