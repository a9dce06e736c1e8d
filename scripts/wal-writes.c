/* What SQLite's WAL writes cost on this machine: N frames of 8,216 bytes (a 24-byte
 * header and an 8 KiB page) written either as SQLite writes them, two pwrite calls a
 * frame (MODE 0), or gathered into one call (MODE 1, what purse-sqlite-wal does), into a
 * file already written once (as a WAL after its first lap), then fdatasync; ITERS commits.
 * BENCHMARKS.md, seventh session.
 *   gcc -O2 -o /tmp/wal-writes scripts/wal-writes.c && /tmp/wal-writes 15 3000 0 && /tmp/wal-writes 15 3000 1
 */
#include <stdio.h>
#include <fcntl.h>
#include <unistd.h>
#include <time.h>
#include <string.h>
#include <stdlib.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e6+t.tv_nsec/1e3;}
int main(int argc,char**argv){
  int frames=atoi(argv[1]); int iters=atoi(argv[2]); int mode=atoi(argv[3]);
  int fd=open("/tmp/wal-writes.dat",O_RDWR|O_CREAT|O_TRUNC,0644);
  size_t fsz=8192+24; size_t lap=(size_t)frames*fsz*64;
  char *z=calloc(1,lap); write(fd,z,lap); fsync(fd);
  char *buf=malloc(frames*fsz); memset(buf,7,frames*fsz);
  double tw=0,ts=0; off_t off=0;
  for(int i=0;i<iters;i++){
    if(off+frames*fsz>lap) off=0;
    double a=now();
    if(mode==0){ for(int f=0;f<frames;f++){ pwrite(fd,buf,24,off); pwrite(fd,buf+24,8192,off+24); off+=fsz; } }
    else { pwrite(fd,buf,frames*fsz,off); off+=frames*fsz; }
    double b=now(); fdatasync(fd); double c=now();
    tw+=b-a; ts+=c-b;
  }
  printf("mode %d frames %d: write %.1f us/commit, sync %.1f us/commit\n",mode,frames,tw/iters,ts/iters);
  close(fd); unlink("/tmp/wal-writes.dat");
  return 0;
}
