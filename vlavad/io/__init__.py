"""Reading and writing the world's data: videos, benchmark datasets, and the per-video stage cache.

A video is read in this order: `header` refuses it from what it says about itself, `probe`
decodes it once for its exact frame count and times (`kept_frames` keeps its grey frames on the
way), `working_frames` hands the tracking pass its frames at a working size, `decoder` turns
packets into frames, and `seek` fetches one frame by index. `frame_folders` reads a folder of
images as a video, `content_key` names a video by its bytes, and `writer` writes browser-playable
video."""
