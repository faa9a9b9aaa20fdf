/* Replaced by the real helper in the next commit. */
int main(void) { return 125; }
