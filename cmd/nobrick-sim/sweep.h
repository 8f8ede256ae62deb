/* sweep.h - the power-cut sweep and its replay (see sweep.c). */
#ifndef SWEEP_H
#define SWEEP_H

int sweep_main(int argc, char **argv);
int replay_main(int argc, char **argv);

#endif
