"""Detections into trajectories: the tracking pass over a video (ByteTrack association and the
optical flow of each object's own pixels)."""
