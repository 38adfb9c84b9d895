/* fpu.c - floating point and SSE across context switches: `fpu SEED` */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
	double seed = argc > 1 ? atof(argv[1]) : 1.0, acc = 0.0;
	float v[8];

	for (int i = 1; i <= 20000; i++) {
		acc += sqrt(seed * i) / (1.0 + i % 7);
		if (i % 5000 == 0)
			printf("seed %g step %d: %.9f\n", seed, i, acc);
	}
	for (int i = 0; i < 8; i++)
		v[i] = (float)(seed * i) * 0.5f;
	printf("seed %g floats %.3f %.3f %.3f\n", seed, v[1] + v[2], v[3] * v[4], v[7] / (v[1] + 1.0f));
	return 0;
}
