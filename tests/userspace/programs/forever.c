/* forever.c - never ends */
int main(void)
{
	for (volatile unsigned long i = 0;; i++)
		;
}
