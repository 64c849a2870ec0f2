"""The board side of the protocol: what a board does with each frame, independent of how bytes arrive.

BoardCore is the virtual board's brain and the executable specification the C firmware follows: it keeps
a model and its integer training state, answers every frame (good or bad) with exactly one reply frame
as PROTOCOL.md specifies, trains with the fixed-point runtime's rule, and refuses a model that would not fit
the memory of its hardware profile. What a request means for the model it holds (an FF MLP, format 1, or a
layered CwC model, format 2) is the model's (firmware_bridge/board_models.py); this module is the protocol.
Its checkpoint, kept in a storage folder (a real board's flash), survives a reset; after a reboot it resumes
from it.
"""
import struct
import time
from collections import deque
from pathlib import Path

import numpy as np

from edgeff.atomic_write import atomic_write_bytes
from edgeff.profiler.hw_profile import HardwareProfile
from firmware_bridge import messages as m
from firmware_bridge.board_models import Memory, ProtocolError, install
from firmware_bridge.framing import BadFrame, Frame, crc32, encode_frame

# two slots, written in turn: magic, generation, samples applied, goodness-correct count, configured (0/1),
# the CONFIGURE payload, the image, then the CRC-32 of all that
CHECKPOINT_SLOTS = ("checkpoint-0.bin", "checkpoint-1.bin")
CHECKPOINT = struct.Struct("<4sIIII")
CHECKPOINT_MAGIC = b"EFC2"
RECENT = 100                              # window of the running goodness accuracy reported by METRICS
MODEL_FORMATS = m.format_bit(m.MODEL_FORMAT) | m.format_bit(m.LAYERED_MODEL_FORMAT)   # INFO's mask: both


def _checked_slot(blob: bytes):
    """(generation, applied, correct, CONFIGURE payload or None, image) of a checkpoint slot; ValueError
    when it is not one or fails its CRC."""
    if len(blob) < CHECKPOINT.size + m.CONFIGURE.size + 4 or blob[:4] != CHECKPOINT_MAGIC:
        raise ValueError("not a checkpoint")
    if crc32(blob[:-4]) != m.OK.unpack(blob[-4:])[0]:
        raise ValueError("its CRC differs (damaged)")
    _, generation, applied, correct, configured = CHECKPOINT.unpack_from(blob)
    config = blob[CHECKPOINT.size:CHECKPOINT.size + m.CONFIGURE.size]
    return generation, applied, correct, config if configured else None, blob[CHECKPOINT.size + m.CONFIGURE.size:-4]


class BoardCore:
    def __init__(self, profile: HardwareProfile, storage=None, name="edgeff-virtual",
                 firmware="edgeff-virtual 1", max_payload=4096, versions=(m.MIN_VERSION, m.PROTOCOL_VERSION)):
        self.profile, self.name, self.firmware = profile, name, firmware
        self.storage = Path(storage) if storage else None
        self.max_payload, self.versions = max_payload, versions
        # a board EdgeFF's firmware runs on states the RAM its firmware gives models (the descriptor's
        # [firmware] image and scratch buffers), so the virtual board takes and refuses what that firmware does
        firmware = profile.firmware
        self.sram_budget = (firmware.image_bytes + firmware.scratch_bytes if firmware
                            else profile.sram_bytes - profile.sram_reserved_bytes)
        self.flash_budget = profile.flash_bytes
        self.frames_ok = self.frames_bad = self.errors_sent = 0
        self.boot()

    # ------------------------------------------------------------------ state
    def boot(self):
        """Power-on: RAM state is lost; the newest checkpoint that passes its CRC is restored, as the
        firmware's flash slots do. A slot that fails its check is passed over, and boot_error says so."""
        self._empty()
        self.boot_error = None
        slots = []
        for i in range(2) if self.storage else ():
            path = self.storage / CHECKPOINT_SLOTS[i]
            try:
                slots.append((_checked_slot(path.read_bytes()), path))
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as exc:
                self.boot_error = f"{path} not restored: {getattr(exc, 'strerror', None) or exc}"
        for (generation, applied, correct, config, image), path in sorted(slots, key=lambda s: -s[0][0]):
            try:
                self._install_model(image)
                if config is not None:
                    self._configure(config)
            except ProtocolError as exc:
                self._empty()
                self.boot_error = f"{path} not restored: {exc}"
                continue
            self.applied = self.checkpoint_applied = applied
            self.correct, self.generation = correct, generation
            if self.boot_error:
                self.boot_error += f"; restored {path.name} instead (sample {applied})"
            return
        if self.boot_error:
            self.boot_error += "; no other checkpoint: starting empty"

    @property
    def trainer(self):
        """The model's integer training state after CONFIGURE, else None."""
        return self.model.trainer if self.model is not None else None

    def _empty(self):
        self.model = None                 # the model held (board_models), installed from its image
        self.run_id, self.configure_payload = 0, None
        self.applied = self.correct = self.checkpoint_applied = self.generation = 0
        self.recent = deque(maxlen=RECENT)
        self.compute_ns = 0
        self.loading = None               # (total, crc, bytearray) while a LOAD is in progress
        self.loaded_bytes = 0
        self.trained_since_install = False
        self._empty_slots()

    def _empty_slots(self):
        """Staging slot i holds the record of a sample whose index is i modulo STAGING_SLOTS: [its index (tag),
        the record's bytes, 1 for each byte received]. The firmware's are the same, in its scratch RAM."""
        self.slots = [[m.EMPTY_SLOT, bytearray(), bytearray()] for _ in range(m.STAGING_SLOTS)]

    def _checkpoint(self):
        """Write the state to the slot that does not hold the newest checkpoint (atomically, with a CRC), so
        a damaged slot leaves the other one to boot from."""
        if self.model is None:
            raise ProtocolError(m.ErrorCode.BAD_STATE, "no model loaded: nothing to checkpoint")
        if self.storage is None:
            raise ProtocolError(m.ErrorCode.STORAGE, "this board has no storage for checkpoints")
        generation = self.generation + 1
        config = self.configure_payload or bytes(m.CONFIGURE.size)
        blob = CHECKPOINT.pack(CHECKPOINT_MAGIC, generation, self.applied, self.correct,
                               int(self.trainer is not None)) + config + self.model.current_image()
        try:
            atomic_write_bytes(self.storage / CHECKPOINT_SLOTS[generation % 2], blob + m.OK.pack(crc32(blob)))
        except OSError as exc:
            raise ProtocolError(m.ErrorCode.STORAGE, f"checkpoint not written: {exc.strerror}") from None
        self.generation = generation
        self.checkpoint_applied = self.applied

    def _install_model(self, image: bytes):
        """Check an image fully and install its model (board_models.install), untrained and unconfigured."""
        self.model = install(image, Memory(self.sram_budget, self.flash_budget, self.profile.name))
        self.run_id, self.configure_payload = 0, None
        self.applied = self.correct = self.checkpoint_applied = 0
        self.trained_since_install = False
        self._empty_slots()

    def _configure(self, payload: bytes):
        self.model.configure(payload)
        run_id = m.CONFIGURE.unpack(payload)[0]
        self.run_id, self.configure_payload = run_id, bytes(payload)
        self.applied = self.correct = self.checkpoint_applied = 0
        self.recent.clear()
        self._empty_slots()               # records staged for another run's samples

    # ------------------------------------------------------------------ frames
    def handle(self, item: Frame | BadFrame) -> bytes:
        """The encoded reply to one received frame (a NAK for a bad one)."""
        if isinstance(item, BadFrame):
            self.frames_bad += 1
            return encode_frame(m.Reply.NAK, m.NAK_SEQ, m.NAK.pack(m.NAK_REASONS[item.reason]))
        self.frames_ok += 1
        try:
            reply_type, payload = self._dispatch(item)
        except ProtocolError as exc:
            self.errors_sent += 1
            reply_type = m.Reply.ERROR
            payload = m.error_payload(exc.code, exc.detail, str(exc), self.max_payload)
        return encode_frame(reply_type, item.seq, payload)

    def _dispatch(self, frame: Frame):
        try:
            request = m.Request(frame.type)
        except ValueError:
            raise ProtocolError(m.ErrorCode.UNKNOWN_TYPE, f"unknown request type {frame.type:#04x}",
                                frame.type) from None
        p = frame.payload
        if request in m.CHUNKED_REQUESTS:
            if len(p) <= m.CHUNKED_REQUESTS[request].size:
                raise ProtocolError(m.ErrorCode.BAD_LENGTH, f"{request.name} needs its header and data", len(p))
        elif len(p) != m.FIXED_REQUEST_SIZES[request]:
            raise ProtocolError(m.ErrorCode.BAD_LENGTH, f"{request.name} takes {m.FIXED_REQUEST_SIZES[request]} "
                                f"payload bytes, got {len(p)}", len(p))
        return getattr(self, f"_on_{request.name.lower()}")(p)

    def _ok(self, value: int = 0):
        return m.Reply.OK, m.OK.pack(value & 0xFFFFFFFF)

    def _require_model(self, configured=False):
        if self.model is None or (configured and self.trainer is None):
            what = "loaded and configured" if configured else "loaded"
            raise ProtocolError(m.ErrorCode.BAD_STATE, f"no model {what}")

    def _on_hello(self, p):
        host_min, host_max = m.HELLO.unpack(p)
        low, high = self.versions
        version = min(host_max, high)
        if version < max(host_min, low):
            raise ProtocolError(m.ErrorCode.VERSION, f"board speaks protocol versions {low}..{high}, "
                                f"host {host_min}..{host_max}", low << 8 | high)
        image = self.model.image if self.model is not None else b""
        flags = int(self.model is not None) | int(self.trainer is not None) << 1
        sram_free = self.sram_budget - (self.model.sram_bytes if self.model is not None else 0)
        return m.Reply.INFO, m.INFO.pack(
            version, low, high, self.max_payload, self.sram_budget, self.flash_budget, sram_free, MODEL_FORMATS,
            flags, self.run_id, self.applied, self.checkpoint_applied, len(image), crc32(image),
            self.name.encode()[:16], self.firmware.encode()[:16])

    def _on_load_begin(self, p):
        total, crc = m.LOAD_BEGIN.unpack(p)
        if total > self.sram_budget + self.flash_budget:
            raise ProtocolError(m.ErrorCode.NO_MEMORY, f"a {total} B model cannot fit {self.profile.name} "
                                f"({self.sram_budget} B SRAM + {self.flash_budget} B flash)", total)
        if self.loading is None or self.loading[:2] != (total, crc):
            self.loading = (total, crc, bytearray(total))
            self.loaded_bytes = 0
        return self._ok(self.loaded_bytes)        # the same image again: the host goes on from here

    def _on_load_chunk(self, p):
        if self.loading is None:
            raise ProtocolError(m.ErrorCode.BAD_STATE, "LOAD_CHUNK without LOAD_BEGIN")
        (offset,), data = m.OFFSET.unpack_from(p), p[m.OFFSET.size:]
        total, _, buffer = self.loading
        if offset > self.loaded_bytes or offset + len(data) > total:
            raise ProtocolError(m.ErrorCode.BAD_RANGE, f"chunk at {offset} (+{len(data)}) outside the received "
                                f"{self.loaded_bytes} of {total} bytes", self.loaded_bytes)
        if self.model is not None:        # a board loads into its model's memory: from here on it has none
            self.model = None
            self.run_id, self.configure_payload = 0, None
        buffer[offset:offset + len(data)] = data
        self.loaded_bytes = max(self.loaded_bytes, offset + len(data))
        return self._ok(self.loaded_bytes)

    def _on_load_end(self, p):
        if self.loading is None:   # a repeated LOAD_END after success: answer as before
            if self.model is not None:
                return self._ok(len(self.model.image))
            raise ProtocolError(m.ErrorCode.BAD_STATE, "LOAD_END without LOAD_BEGIN")
        total, crc, buffer = self.loading
        self.loading = None
        try:
            if self.loaded_bytes != total or crc32(bytes(buffer)) != crc:
                raise ProtocolError(m.ErrorCode.BAD_MODEL, f"image incomplete or its CRC differs "
                                    f"({self.loaded_bytes} of {total} bytes); load it again")
            self._install_model(bytes(buffer))
        except ProtocolError:
            self.boot()                   # back to the last checkpoint
            raise
        if self.storage is not None:
            self._checkpoint()
        return self._ok(total)

    def _on_configure(self, p):
        self._require_model()
        if self.trainer is not None and bytes(p) == self.configure_payload:
            return self._ok(self.applied)           # a repeat: training continues where it is
        if self.trained_since_install:              # the loaded image is gone: it was trained in place
            raise ProtocolError(m.ErrorCode.BAD_STATE, "samples were applied since the model was loaded; load it "
                                "again to start another run", self.applied)
        self._configure(p)
        if self.storage is not None:
            self._checkpoint()
        return self._ok(0)

    def _on_stage(self, p):
        """Bytes of sample `index`'s record at `offset`, into its slot, in any order: a chunk lost on the way
        is sent again alone. Idempotent: a sample already applied is ignored (a late resend), one too far
        ahead for a slot is refused, and a slot holding an earlier sample starts over for this one."""
        self._require_model()
        (index, offset), data = m.STAGE.unpack_from(p), p[m.STAGE.size:]
        size = self.model.record_size
        if offset + len(data) > size:
            raise ProtocolError(m.ErrorCode.BAD_RANGE, f"stage at {offset} (+{len(data)}) outside the {size}-byte "
                                "record", size)
        if index < self.applied:
            return m.Reply.STAGED, m.STAGED.pack(self.applied, 0, 0)
        if index >= self.applied + m.STAGING_SLOTS:
            raise ProtocolError(m.ErrorCode.SEQUENCE, f"sample {index} staged, {self.applied} applied: at most "
                                f"{m.STAGING_SLOTS} samples are staged at once", self.applied)
        slot = self.slots[index % m.STAGING_SLOTS]
        if slot[0] != index:
            slot[:] = [index, bytearray(size), bytearray(size)]
        slot[1][offset:offset + len(data)] = data
        slot[2][offset:offset + len(data)] = b"\1" * len(data)
        return m.Reply.STAGED, m.STAGED.pack(self.applied, *_held(slot[2]))

    def _staged_record(self, index: int, crc: int):
        """The record staged as sample `index`, checked against the CRC the host sent. A whole record with
        another CRC is another record's bytes (staged for the same index before): the slot is emptied, so
        staging it again starts from nothing."""
        size = self.model.record_size
        slot = self.slots[index % m.STAGING_SLOTS]
        held = _held(slot[2])[0] if slot[0] == index != m.EMPTY_SLOT else 0   # INFER may name any index
        if held != size or crc32(bytes(slot[1])) != crc:
            if held == size:
                slot[:] = [m.EMPTY_SLOT, bytearray(), bytearray()]
            raise ProtocolError(m.ErrorCode.BAD_SAMPLE, f"staged sample {index} incomplete or its CRC differs "
                                f"({held} of {size} bytes); stage it again", held)
        record = slot[1]
        label, negative = record[0], record[1]
        self.model.check_labels(label, negative)
        image = np.frombuffer(bytes(record[2:]), np.uint8)[None]
        return label, negative, image

    def _on_train(self, p):
        self._require_model(configured=True)
        index, crc = m.TRAIN.unpack(p)
        if index < self.applied:
            return m.Reply.TRAINED, m.TRAINED.pack(self.applied, 0, 1)     # already applied: not again
        if index > self.applied:
            raise ProtocolError(m.ErrorCode.SEQUENCE, f"sample {index} sent, {self.applied} expected next",
                                self.applied)
        label, negative, image = self._staged_record(index, crc)
        start = time.perf_counter_ns()
        correct = self.model.train(label, negative, image)
        self.compute_ns += time.perf_counter_ns() - start
        self.applied += 1
        self.trained_since_install = True
        self.correct += correct
        self.recent.append(correct)
        return m.Reply.TRAINED, m.TRAINED.pack(self.applied, correct, 0)

    def _on_infer(self, p):
        self._require_model()
        index, crc = m.INFER.unpack(p)
        _, _, image = self._staged_record(index, crc)
        decision, one_pass, scores = self.model.infer(image)
        clipped = np.clip(scores, -(1 << 31), (1 << 31) - 1).astype("<i4")
        return m.Reply.SCORES, m.SCORES.pack(decision, one_pass) + clipped.tobytes()

    def _on_metrics(self, p):
        return m.Reply.METRICS, m.METRICS.pack(self.applied, self.correct, sum(self.recent), len(self.recent),
                                               self.compute_ns // 1000, self.frames_ok, self.frames_bad,
                                               self.errors_sent)

    def _on_read(self, p):
        self._require_model()
        offset, length = m.READ.unpack(p)
        image = self.model.current_image()
        if offset > len(image) or length > self.max_payload - m.DATA.size:
            raise ProtocolError(m.ErrorCode.BAD_RANGE, f"read at {offset} (+{length}) outside the "
                                f"{len(image)}-byte image or longer than a frame", len(image))
        return m.Reply.DATA, m.DATA.pack(offset, len(image)) + image[offset:offset + length]

    def _on_checkpoint(self, p):
        self._checkpoint()
        return self._ok(self.applied)

    def _on_restore(self, p):
        """Back to the last checkpoint; the link and its counters stay."""
        self.boot()
        return self._ok(self.applied)

    def _on_reset(self, p):
        """A reboot: RAM state and link counters are gone, the checkpoint is restored."""
        self.frames_ok = self.frames_bad = self.errors_sent = 0
        self.boot()
        return self._ok(self.applied)


def _held(received: bytearray) -> tuple[int, int]:
    """(bytes received, the first offset not received: the record's size when it is whole) of a slot."""
    missing = received.find(0)
    return len(received) - received.count(0), len(received) if missing < 0 else missing
