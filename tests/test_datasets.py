import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io

from vlavad.core.errors import ConfigError, DatasetError
from vlavad.io.datasets import LAYOUTS, Dataset, VideoRef, check_labels, count_frames, detect_layout, list_datasets, load_dataset

SHARED_PED2 = Path(__file__).resolve().parents[2] / "shared/data/ped2"


# --- tiny fixture builders ---------------------------------------------------------------------


def frames(folder: Path, n: int, ext: str = ".jpg", start: int = 0, digits: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        cv2.imwrite(str(folder / f"{i:0{digits}d}{ext}"), np.full((8, 8), 40 * (i % 5), np.uint8))
    return folder


def video(path: Path, n: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fourcc = "MJPG" if path.suffix == ".avi" else "mp4v"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (16, 16))
    for i in range(n):
        writer.write(np.full((16, 16, 3), 30 * i, np.uint8))
    writer.release()
    return path


UCSD_GT = """\
TestVideoFile = {};
% comment: the ranges are 1-based and inclusive
TestVideoFile{end+1}.gt_frame = [2:3, 5:6];
TestVideoFile{end+1}.gt_frame = [];
TestVideoFile{end+1}.gt_frame = [1:4];
"""


def make_ucsd(root: Path, gt: str = UCSD_GT) -> Path:
    frames(root / "Train/Train001", 3, ".tif", start=1)
    frames(root / "Train/Train002", 2, ".tif", start=1)
    frames(root / "Test/Test001", 6, ".tif", start=1)
    frames(root / "Test/Test001_gt", 6, ".bmp", start=1)  # pixel masks: not a video
    frames(root / "Test/Test002", 5, ".tif", start=1)
    frames(root / "Test/Test003", 4, ".tif", start=1)
    (root / "Test/Test002/.DS_Store").write_bytes(b"x")  # hidden: not a frame
    (root / "Test/UCSDped2.m").write_text(gt)
    return root


def vol_label(masks: list[np.ndarray]) -> dict:
    """The contents of an Avenue N_label.mat: volLabel, a MATLAB 1 x T cell array of masks."""
    cell = np.empty((1, len(masks)), dtype=object)
    for i, mask in enumerate(masks):
        cell[0, i] = mask.astype(np.uint8)
    return {"volLabel": cell}


def make_avenue(root: Path, mask_dir: str = "testing_label_mask") -> Path:
    video(root / "training_videos/01.avi", 3)
    video(root / "training_videos/02.avi", 2)
    video(root / "testing_videos/01.avi", 4)
    video(root / "testing_videos/02.avi", 3)
    empty, hit = np.zeros((6, 8)), np.zeros((6, 8))
    hit[2, 3] = 1
    (root / mask_dir).mkdir(parents=True)
    scipy.io.savemat(root / mask_dir / "1_label.mat", vol_label([empty, hit, hit, empty]))
    scipy.io.savemat(root / mask_dir / "2_label.mat", vol_label([empty] * 3))
    return root


def make_shanghaitech(root: Path) -> Path:
    video(root / "training/videos/01_001.avi", 3)
    video(root / "training/videos/02_001.avi", 2)
    frames(root / "testing/frames/01_0014", 4)
    frames(root / "testing/frames/02_0128", 3)
    (root / "testing/test_frame_mask").mkdir(parents=True)
    np.save(root / "testing/test_frame_mask/01_0014.npy", np.array([0, 1, 1, 0]))
    np.save(root / "testing/test_frame_mask/02_0128.npy", np.array([1, 1, 1]))
    return root


def make_mp4_json(root: Path) -> Path:
    video(root / "train/Train001.mp4", 3)
    video(root / "test/Test001.mp4", 4)
    video(root / "test/Test002.mp4", 2)
    labels = {"Test001": [0, 1, 1, 0], "Test002": [1, 1]}
    (root / "test_labels.json").write_text(json.dumps(labels))
    return root


def make_custom(root: Path, labels: dict | None = None, train: str = "normal") -> Path:
    video(root / train / "lobby.avi", 3)
    frames(root / train / "street", 2, ".png")
    video(root / "test/plaza.avi", 5)
    frames(root / "test/gate", 4, ".png")
    if labels is not None:
        (root / "labels.json").write_text(json.dumps(labels))
    return root


def names(refs: list[VideoRef]) -> list[str]:
    return [r.name for r in refs]


def assert_labels(ds: Dataset, expected: dict[str, list[int]]):
    assert list(ds.labels) == list(expected)
    for name, want in expected.items():
        assert ds.labels[name].dtype == np.int8
        np.testing.assert_array_equal(ds.labels[name], want)


# --- layouts -----------------------------------------------------------------------------------


def test_ucsd(tmp_path):
    ds = load_dataset(make_ucsd(tmp_path / "UCSDped2"))
    assert (ds.name, ds.layout, ds.root) == ("UCSDped2", "ucsd", (tmp_path / "UCSDped2").resolve())
    assert names(ds.train) == ["Train001", "Train002"]
    assert names(ds.test) == ["Test001", "Test002", "Test003"]  # Test001_gt skipped
    assert ds.test[0].path == ds.root / "Test/Test001"
    assert_labels(
        ds,
        {"Test001": [0, 1, 1, 0, 1, 1], "Test002": [0, 0, 0, 0, 0], "Test003": [1, 1, 1, 1]},
    )


def test_ucsd_range_past_the_last_frame(tmp_path):
    root = make_ucsd(tmp_path / "ped", UCSD_GT.replace("[1:4]", "[1:5]"))
    with pytest.raises(DatasetError, match=r"UCSDped2\.m.*1:5.*Test003.*4 frames"):
        load_dataset(root)


def test_ucsd_gt_video_count_must_match(tmp_path):
    root = make_ucsd(tmp_path / "ped", UCSD_GT + "TestVideoFile{end+1}.gt_frame = [1:2];\n")
    with pytest.raises(DatasetError, match=r"lists 4 test videos but Test/ holds 3"):
        load_dataset(root)


def test_ucsd_without_gt_file(tmp_path):
    root = make_ucsd(tmp_path / "ped")
    (root / "Test/UCSDped2.m").unlink()
    assert detect_layout(root) is None
    with pytest.raises(DatasetError, match=r"UCSDped1\.m or UCSDped2\.m"):
        load_dataset(root, "ucsd")


def test_ucsd_gt_agrees_with_shared_labels(tmp_path):
    """The official UCSDped2.m, parsed, gives exactly the labels of the shared copy's JSON."""
    gt = SHARED_PED2 / "gt_sources/UCSDped2.m"
    if not gt.is_file():
        pytest.skip(f"{gt} not available")
    want = json.loads((SHARED_PED2 / "test_labels.json").read_text())
    root = tmp_path / "UCSDped2"
    (root / "Train/Train001").mkdir(parents=True)
    (root / "Train/Train001/001.tif").touch()  # frames are counted, never decoded
    for name, labels in want.items():
        (root / "Test" / name).mkdir(parents=True)
        for i in range(len(labels)):
            (root / "Test" / name / f"{i + 1:03d}.tif").touch()
    (root / "Test/UCSDped2.m").write_bytes(gt.read_bytes())
    assert_labels(load_dataset(root), want)


@pytest.mark.parametrize("mask_dir", ["testing_label_mask", "ground_truth_demo/testing_label_mask"])
def test_avenue(tmp_path, mask_dir):
    ds = load_dataset(make_avenue(tmp_path / "avenue", mask_dir))
    assert ds.layout == "avenue"
    assert names(ds.train) == ["01", "02"]
    assert names(ds.test) == ["01", "02"]
    assert ds.test[1].path == ds.root / "testing_videos/02.avi"
    assert_labels(ds, {"01": [0, 1, 1, 0], "02": [0, 0, 0]})


def test_avenue_missing_label_file(tmp_path):
    root = make_avenue(tmp_path / "avenue")
    (root / "testing_label_mask/2_label.mat").unlink()
    with pytest.raises(DatasetError, match=r"2_label\.mat: file not found"):
        load_dataset(root)


def test_avenue_label_file_without_vol_label(tmp_path):
    root = make_avenue(tmp_path / "avenue")
    scipy.io.savemat(root / "testing_label_mask/2_label.mat", {"gt": np.zeros(3)})
    with pytest.raises(DatasetError, match=r"2_label\.mat: expected a volLabel cell array"):
        load_dataset(root)


def test_shanghaitech(tmp_path):
    ds = load_dataset(make_shanghaitech(tmp_path / "shanghaitech"))
    assert ds.layout == "shanghaitech"
    assert names(ds.train) == ["01_001", "02_001"]
    assert names(ds.test) == ["01_0014", "02_0128"]
    assert ds.test[0].path == ds.root / "testing/frames/01_0014"
    assert_labels(ds, {"01_0014": [0, 1, 1, 0], "02_0128": [1, 1, 1]})


def test_shanghaitech_refuses_pickled_masks(tmp_path):
    root = make_shanghaitech(tmp_path / "sh")
    np.save(root / "testing/test_frame_mask/02_0128.npy", np.array([[1], "x"], dtype=object))
    with pytest.raises(DatasetError, match=r"02_0128\.npy"):
        load_dataset(root)


def test_mp4_json(tmp_path):
    ds = load_dataset(make_mp4_json(tmp_path / "ped2"))
    assert ds.layout == "mp4_json"
    assert names(ds.train) == ["Train001"]
    assert names(ds.test) == ["Test001", "Test002"]
    assert ds.test[0].path == ds.root / "test/Test001.mp4"
    assert_labels(ds, {"Test001": [0, 1, 1, 0], "Test002": [1, 1]})


def test_custom_with_frame_lists_and_intervals(tmp_path):
    # gate: 4 frames given one label each; plaza: 5 frames given as intervals, counted by PyAV
    root = make_custom(tmp_path / "mine", {"gate": [0, 0, 1, 1], "plaza": [[0, 0], [2, 3]]})
    ds = load_dataset(root)
    assert ds.layout == "custom"
    assert names(ds.train) == ["lobby", "street"]
    assert names(ds.test) == ["gate", "plaza"]
    assert ds.test[0].path == ds.root / "test/gate"
    assert ds.test[1].path == ds.root / "test/plaza.avi"
    assert_labels(ds, {"gate": [0, 0, 1, 1], "plaza": [1, 0, 1, 1, 0]})


def test_custom_intervals_use_the_frame_counter(tmp_path):
    root = make_custom(tmp_path / "mine", {"plaza": [[1, 2]], "gate": []}, train="train")
    counted = []

    def counter(path: Path) -> int:
        counted.append(path.name)
        return 4

    ds = load_dataset(root, frame_counter=counter)
    assert sorted(counted) == ["gate", "plaza.avi"]
    assert_labels(ds, {"plaza": [0, 1, 1, 0], "gate": [0, 0, 0, 0]})


def test_custom_without_labels(tmp_path):
    ds = load_dataset(make_custom(tmp_path / "mine"))
    assert ds.labels == {}
    check_labels(ds, {"gate": 4, "plaza": 5})  # nothing to check


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"nope": [0, 1]}, r"labels for 'nope', which is not a test video"),
        ({"gate": [0, 2, 1, 1]}, r"labels for gate must be a non-empty list of 0/1"),
        ({"gate": "0011"}, r"labels for gate must be a list"),
        ({"plaza": [[3, 5]]}, r"interval \[3, 5\] for plaza is not \[start, end\] within its 5"),
        ({"plaza": [[2, 1]]}, r"interval \[2, 1\]"),
        ([0, 1], r"expected an object"),
    ],
)
def test_custom_bad_labels(tmp_path, labels, message):
    root = make_custom(tmp_path / "mine", labels)
    with pytest.raises(DatasetError, match=message):
        load_dataset(root)


def test_custom_labels_not_json(tmp_path):
    root = make_custom(tmp_path / "mine")
    (root / "test_labels.json").write_text("{gate: [0, 1")
    with pytest.raises(DatasetError, match=r"test_labels\.json is not valid JSON"):
        load_dataset(root)


def test_custom_labels_nested_deep_are_one_line(tmp_path):
    root = make_custom(tmp_path / "mine")
    (root / "test_labels.json").write_text('{"gate": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(DatasetError, match=r"test_labels\.json nests 100001 levels deep"):
        load_dataset(root)


def test_custom_two_videos_with_one_name(tmp_path):
    root = make_custom(tmp_path / "mine")
    video(root / "test/plaza.mp4", 2)
    with pytest.raises(DatasetError, match=r"two videos named plaza"):
        load_dataset(root)


def test_custom_empty_frame_folder(tmp_path):
    root = make_custom(tmp_path / "mine")
    (root / "test/empty").mkdir()
    with pytest.raises(DatasetError, match=r"empty: frame folder holds no images"):
        load_dataset(root)


def test_count_frames(tmp_path):
    assert count_frames(video(tmp_path / "a.avi", 3)) == 3
    assert count_frames(video(tmp_path / "b.mp4", 4)) == 4
    assert count_frames(frames(tmp_path / "c", 5)) == 5


# --- detection and errors ----------------------------------------------------------------------


def test_auto_detection_picks_each_layout(tmp_path):
    roots = {
        "ucsd": make_ucsd(tmp_path / "a"),
        "avenue": make_avenue(tmp_path / "b"),
        "shanghaitech": make_shanghaitech(tmp_path / "c"),
        "mp4_json": make_mp4_json(tmp_path / "d"),
        "custom": make_custom(tmp_path / "e"),
    }
    assert list(roots) == list(LAYOUTS)
    for layout, root in roots.items():
        assert detect_layout(root) == layout
        assert load_dataset(root).layout == layout
        assert load_dataset(root, layout).layout == layout


def test_custom_with_train_folder_and_labels_json_but_no_mp4_is_custom(tmp_path):
    root = make_custom(tmp_path / "mine", {"gate": [0, 0, 1, 1]}, train="train")
    (root / "labels.json").rename(root / "test_labels.json")
    assert detect_layout(root) == "custom"
    assert_labels(load_dataset(root), {"gate": [0, 0, 1, 1]})


def test_unknown_layout_name(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown dataset layout 'kitti'"):
        load_dataset(make_custom(tmp_path / "mine"), "kitti")


def test_unrecognisable_folder(tmp_path):
    (tmp_path / "junk/videos").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"junk: not a known dataset layout; looked for Train/"):
        load_dataset(tmp_path / "junk")


def test_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match=r"nowhere: dataset folder not found"):
        load_dataset(tmp_path / "nowhere")


def test_explicit_layout_that_does_not_fit(tmp_path):
    with pytest.raises(DatasetError, match=r"missing folder training_videos/"):
        load_dataset(make_custom(tmp_path / "mine"), "avenue")


# --- check_labels ------------------------------------------------------------------------------


def test_check_labels(tmp_path):
    ds = load_dataset(make_mp4_json(tmp_path / "ped2"))
    check_labels(ds, {"Test001": 4, "Test002": 2})
    with pytest.raises(DatasetError, match=r"Test001\.mp4: labels have 4 frames but the video has 5"):
        check_labels(ds, {"Test001": 5, "Test002": 2})


def test_check_labels_names_a_test_video_without_labels(tmp_path):
    ds = load_dataset(make_custom(tmp_path / "mine", {"plaza": [0, 1, 1, 0, 0]}))
    with pytest.raises(DatasetError, match=r"test video gate has no labels"):
        check_labels(ds, {"gate": 4, "plaza": 5})


# --- symlinks ----------------------------------------------------------------------------------
# The web app reads datasets confined to its data root (`confine_to`): no link may lead it outside.
# From the command line a dataset may link to other disks freely.


def test_symlinked_video_outside_the_data_root_is_refused(tmp_path):
    root = make_custom(tmp_path / "data" / "mine")
    os.symlink(video(tmp_path / "secret.avi", 2), root / "test/evil.avi")
    with pytest.raises(DatasetError, match=r"test/evil\.avi points outside the data folder"):
        load_dataset(root, confine_to=tmp_path / "data")
    assert "evil" in names(load_dataset(root).test)


def test_symlinked_frame_outside_the_data_root_is_refused(tmp_path):
    root = make_custom(tmp_path / "data" / "mine")
    os.symlink(frames(tmp_path / "secret", 1) / "000.jpg", root / "test/gate/009.png")
    with pytest.raises(DatasetError, match=r"gate/009\.png points outside the data folder"):
        load_dataset(root, confine_to=tmp_path / "data")


def test_symlinked_folder_outside_the_data_root_is_refused(tmp_path):
    root = make_shanghaitech(tmp_path / "data" / "sh")
    # move the mask folder out of the dataset and leave a link to it in its place
    (root / "testing/test_frame_mask").rename(tmp_path / "masks")
    os.symlink(tmp_path / "masks", root / "testing/test_frame_mask")
    with pytest.raises(DatasetError, match=r"testing/test_frame_mask points outside the data folder"):
        load_dataset(root, confine_to=tmp_path / "data")


def test_a_train_folder_linked_from_another_disk_works_from_the_command_line(tmp_path):
    root = make_custom(tmp_path / "mine", train="train")
    (root / "train").rename(tmp_path / "big-disk-train")
    os.symlink(tmp_path / "big-disk-train", root / "train")
    assert len(load_dataset(root).train) >= 1


def test_symlink_inside_root_is_fine(tmp_path):
    root = make_custom(tmp_path / "data" / "mine")
    os.symlink(root / "test/plaza.avi", root / "test/plaza_again.avi")
    assert names(load_dataset(root, confine_to=tmp_path / "data").test) == ["gate", "plaza", "plaza_again"]


def test_list_datasets(tmp_path):
    data = tmp_path / "data"
    make_mp4_json(data / "ped2")
    make_avenue(data / "avenue")
    (data / "notes").mkdir()  # not a dataset
    (data / "README.md").write_text("hi")
    os.symlink(make_custom(tmp_path / "outside"), data / "escape")  # leads out of data/
    os.symlink(data / "ped2", data / "ped2_link")  # stays inside data/
    assert list_datasets(data) == ["avenue", "ped2", "ped2_link"]


def test_list_datasets_missing_root(tmp_path):
    with pytest.raises(DatasetError, match=r"data folder not found"):
        list_datasets(tmp_path / "nowhere")


# --- the shared Ped2 copy ----------------------------------------------------------------------


@pytest.mark.skipif(not SHARED_PED2.is_dir(), reason=f"{SHARED_PED2} not available")
def test_shared_ped2():
    ds = load_dataset(SHARED_PED2)
    assert ds.layout == "mp4_json"
    assert len(ds.train) == 16 and len(ds.test) == 12
    assert names(ds.test) == [f"Test{i:03d}" for i in range(1, 13)]
    assert sum(len(y) for y in ds.labels.values()) == 2010
    assert sum(int(y.sum()) for y in ds.labels.values()) == 1648
    assert list_datasets(SHARED_PED2.parent).count("ped2") == 1
