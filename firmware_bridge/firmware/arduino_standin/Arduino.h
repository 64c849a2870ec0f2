/* A stand-in for the part of the Arduino core that the EdgeFF library uses (Stream, Serial, micros), so that
 * the library and its example sketch compile and link without an Arduino toolchain: for a Cortex-M4F
 * (standin_cortex_m.cpp, to measure RAM and flash) and for the host (standin_host.cpp, to run the sketch
 * against EdgeFF's host driver over a pty). The signatures are the Arduino core's. */
#ifndef EDGEFF_ARDUINO_STANDIN_H
#define EDGEFF_ARDUINO_STANDIN_H

#include <stddef.h>
#include <stdint.h>

class Stream {
public:
    virtual int available() = 0;
    virtual int read() = 0;
    virtual size_t write(const uint8_t *buffer, size_t size) = 0;
};

class StandInSerial : public Stream {
public:
    void begin(unsigned long baud);
    explicit operator bool();
    int available() override;
    int read() override;
    size_t write(const uint8_t *buffer, size_t size) override;
};

extern StandInSerial Serial;

unsigned long micros(void);
void setup(void);
void loop(void);

#endif
