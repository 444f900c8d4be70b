"""ByteTrack (Zhang et al., ECCV 2022): frame-to-frame association of detections into tracks, with
every track's Kalman filter held in one set of arrays.

The algorithm, its tuning and its order of operations are those of `trackers.ByteTrackTracker`
(trackers 2.6.1) at a fixed frame rate, and it gives the same tracks (`tests/test_bytetrack.py`
compares the two on random scenes). That implementation keeps one Kalman filter object per track,
which made it about a fifth of scoring's time on Ped2; here a frame's predict and update are a few
array operations whatever the number of tracks (`benchmarks/tracker_speed.py` times the two).

Each frame:
1. every track's box is predicted by a constant-velocity Kalman filter on its corners;
2. confident detections are matched to all tracks by IoU (an optimal assignment), then the
   unconfident ones to the tracks still unmatched, which recovers objects the detector is unsure of
   for a frame or two;
3. matched tracks are corrected by their detection; a track matched `min_consecutive` frames in a
   row is confirmed and gets the next id; an unmatched confident detection starts a track;
4. a confirmed track unmatched for more than `max_frames_lost` frames ends, and so does an
   unconfirmed one as soon as it is unmatched.
"""

from __future__ import annotations

import numpy as np
import supervision as sv
from scipy.optimize import linear_sum_assignment

# Kalman filter on the state (x1, y1, x2, y2, and their velocities), observing the four corners.
_STATE, _OBSERVED = 8, 4
_PROCESS_NOISE = 0.01 * np.eye(_STATE)  # ByteTrack's tuning: boxes drift little between frames
_MEASUREMENT_NOISE = 0.1 * np.eye(_OBSERVED)
_IDENTITY = np.eye(_STATE)


class ByteTrack:
    """Tracks of one video: call `update` with each frame's detections, in order."""

    def __init__(
        self,
        *,
        max_frames_lost: int,
        activation_threshold: float,
        high_confidence: float,
        min_consecutive: int = 2,
        min_iou: float = 0.1,
    ):
        self.max_frames_lost = max_frames_lost  # frames a confirmed track may go unmatched
        self.activation_threshold = activation_threshold  # a detection from this confidence starts a track
        self.high_confidence = high_confidence  # detections from here are matched first, to every track
        self.min_consecutive = min_consecutive  # matches in a row that confirm a track
        self.min_iou = min_iou  # the least overlap of a match
        self._next_id = 0
        # One row per track, in the order the tracks started: that order breaks ties in matching.
        self.mean = np.zeros((0, _STATE))
        self.covariance = np.zeros((0, _STATE, _STATE))
        self.track_id = np.zeros(0, np.int64)  # -1 until confirmed
        self.hits = np.zeros(0, np.int64)  # consecutive frames matched
        self.missed = np.zeros(0, np.int64)  # frames since the last match

    def update(self, boxes: np.ndarray, confidences: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Associates one frame's detections, `boxes` (N, 4) as x1, y1, x2, y2, with the tracks.

        Returns (the indices of the detections that belong to a confirmed track, those tracks'
        ids). Detections without `confidences` count as fully confident.
        """
        boxes = np.asarray(boxes).reshape(-1, 4)
        confidences = np.ones(len(boxes)) if confidences is None else np.asarray(confidences)
        rows = detections = np.zeros(0, np.int64)
        high = np.flatnonzero(confidences >= self.high_confidence)
        starting = high
        if len(self.track_id):
            self._predict()
            predicted = self.mean[:, :_OBSERVED].copy()
            low = np.flatnonzero(confidences < self.high_confidence)
            rows, columns = _match(predicted, boxes[high], self.min_iou)
            unmatched = _others(len(predicted), rows)
            low_rows, low_columns = _match(predicted[unmatched], boxes[low], self.min_iou)
            # Confident matches first: tracks confirmed in this frame get their ids in this order.
            rows, detections = np.concatenate([rows, unmatched[low_rows]]), np.concatenate([high[columns], low[low_columns]])
            self._correct(rows, boxes[detections])
            starting = high[_others(len(high), columns)]
        # Compared in double precision, as the reference does, whatever the detector's type.
        starting = starting[confidences[starting].astype(np.float64) >= self.activation_threshold]
        ids = self.track_id[rows]
        self._start(boxes[starting])
        self._prune()
        confirmed = ids >= 0
        return detections[confirmed], ids[confirmed]

    def _predict(self) -> None:
        """Moves every track one frame on: x' = F x and P' = F P Fᵀ + Q, with F adding each corner's
        velocity to it, written out by blocks (bit for bit the matrix products)."""
        self.mean[:, :_OBSERVED] += self.mean[:, _OBSERVED:]
        p = self.covariance  # in place
        p[:, :_OBSERVED, :] += p[:, _OBSERVED:, :]  # F P: position rows gain velocity rows
        p[:, :, :_OBSERVED] += p[:, :, _OBSERVED:]  # (F P) Fᵀ: the same for columns
        p += _PROCESS_NOISE
        self.hits[self.missed > 0] = 0  # a track unmatched last frame starts its run of matches again
        self.missed += 1

    def _correct(self, rows: np.ndarray, boxes: np.ndarray) -> None:
        """The Kalman update of tracks `rows` by their matched `boxes`, then their bookkeeping.
        Written with the products the reference filter takes, in its order, one matrix per track."""
        if not len(rows):
            return
        mean, p = self.mean[rows, :, None], self.covariance[rows]
        innovation = boxes.astype(np.float64)[:, :, None] - mean[:, :_OBSERVED]
        p_ht = p[:, :, :_OBSERVED]  # P Hᵀ, H selecting the corners
        gain = p_ht @ np.linalg.inv(p_ht[:, :_OBSERVED] + _MEASUREMENT_NOISE)
        self.mean[rows] = (mean + gain @ innovation)[:, :, 0]
        gain_h = np.concatenate([gain, np.zeros_like(gain)], axis=2)  # K H
        i_kh = _IDENTITY - gain_h
        # Joseph form, as the reference: (I - K H) P (I - K H)ᵀ + K R Kᵀ.
        self.covariance[rows] = i_kh @ p @ i_kh.transpose(0, 2, 1) + gain @ _MEASUREMENT_NOISE @ gain.transpose(0, 2, 1)
        self.missed[rows] = 0
        self.hits[rows] += 1
        # Tracks confirmed now get ids in the order they were matched.
        newly = rows[(self.hits[rows] >= self.min_consecutive) & (self.track_id[rows] < 0)]
        self.track_id[newly] = self._next_id + np.arange(len(newly))
        self._next_id += len(newly)

    def _start(self, boxes: np.ndarray) -> None:
        count = len(boxes)
        if not count:
            return
        mean = np.zeros((count, _STATE))
        mean[:, :_OBSERVED] = boxes
        self.mean = np.concatenate([self.mean, mean])
        self.covariance = np.concatenate([self.covariance, np.broadcast_to(_IDENTITY, (count, _STATE, _STATE))])  # P = I
        self.track_id = np.concatenate([self.track_id, np.full(count, -1)])
        self.hits = np.concatenate([self.hits, np.ones(count, np.int64)])
        self.missed = np.concatenate([self.missed, np.zeros(count, np.int64)])

    def _prune(self) -> None:
        alive = (self.missed <= self.max_frames_lost) & ((self.track_id >= 0) | (self.hits >= self.min_consecutive) | (self.missed == 0))
        if not alive.all():
            self.mean, self.covariance = self.mean[alive], self.covariance[alive]
            self.track_id, self.hits, self.missed = self.track_id[alive], self.hits[alive], self.missed[alive]


def _match(tracks: np.ndarray, detections: np.ndarray, min_iou: float) -> tuple[np.ndarray, np.ndarray]:
    """(track rows, detection columns) of the assignment with the largest total IoU, keeping pairs
    that overlap by at least `min_iou`; rows ascending."""
    if not len(tracks) or not len(detections):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    iou = sv.box_iou_batch(tracks, detections)  # float32, as the reference compares it
    rows, columns = linear_sum_assignment(iou, maximize=True)
    good = iou[rows, columns] >= min_iou
    return rows[good], columns[good]


def _others(count: int, taken: np.ndarray) -> np.ndarray:
    """The indices below `count` that are not in `taken`, ascending."""
    free = np.ones(count, bool)
    free[taken] = False
    return np.flatnonzero(free)
