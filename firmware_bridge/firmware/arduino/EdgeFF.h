/* EdgeFF on an Arduino board: the board side of EdgeFF's serial protocol (PROTOCOL.md in this library), so
 * that `edgeff board train --model M --port /dev/ttyACM0 ...` on the host loads, trains and reads back a
 * Forward-Forward model on this board, bit-identical to EdgeFF's integer runtime.
 *
 *   EdgeFFBoard edgeff;
 *   void setup() { Serial.begin(115200); while (!Serial) {} edgeff.begin(Serial); }
 *   void loop()  { edgeff.poll(); }
 *
 * The model, its master weights and the training buffers are static arrays sized by edgeff_config.h
 * (written by `edgeff export MODEL --format arduino`); nothing is allocated at run time. */
#ifndef EDGEFF_ARDUINO_H
#define EDGEFF_ARDUINO_H

#include <Arduino.h>

#include "edgeff_config.h"
extern "C" {
#include "board_protocol.h"
}

class EdgeFFBoard {
public:
    /* Starts answering the host on `port` (Serial for USB CDC, or a hardware UART): restores the newest
     * checkpoint when storage was given, else installs the model compiled into the library. */
    void begin(Stream &port);
    /* Feeds every byte that has arrived to the frame decoder and sends one reply per frame; a training
     * step runs inside it, so call it from loop() and keep the rest of loop() short. */
    void poll();
    /* Non-volatile storage for checkpoints (call before begin): two slots of checkpointSlotBytes() each at
     * `slots` (memory-mapped flash, readable in place), written through `write` (0 when written). Without
     * it the board keeps no checkpoint and a power cycle loses the training (the host then loads again). */
    void setStorage(const uint8_t *slots, int (*write)(uint32_t offset, const uint8_t *data, uint32_t n));
    static uint32_t checkpointSlotBytes();
    uint32_t samplesApplied() const { return board_.applied; }

private:
    void start();
    void send(const uint8_t *data, uint32_t n);
    Stream *port_ = nullptr;
    ef_board board_ = {};
    ef_frame_decoder decoder_ = {};
};

#endif
