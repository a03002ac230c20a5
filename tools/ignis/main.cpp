#include <cstdio>
int main() { std::puts("ignis"); return 0; }
