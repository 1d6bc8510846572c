"""roadmap train: loss, recipe, exact resume, datasets and their errors, DDP on CPU (gloo)."""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml
from conftest import interrupted_when, nth_call
from PIL import Image

from roadmap_cli.data.dataset import RoadDataset, patch_origins
from roadmap_cli.data.sources import build_pairs, deepglobe_split, massachusetts_pairs
from roadmap_cli.errors import UserError
from roadmap_cli.io.images import read_label
from roadmap_cli.train import TrainOptions, bce_dice_loss, lr_at, run_train


def write_tiny_yaml(path, cfg):
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    return path


def make_folder_dataset(root, n=4, size=96):
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        lab = np.zeros((size, size), np.uint8)
        r = int(rng.integers(10, size - 10))
        lab[r - 3:r + 3] = 255
        img = np.where(lab[..., None] > 0, 200, 70).astype(np.uint8).repeat(3, 2)
        Image.fromarray(img).save(root / "images" / f"t{i}.png")
        Image.fromarray(lab).save(root / "labels" / f"t{i}.png")
    return root


def test_loss_is_bce_plus_dice():
    logits = torch.tensor([[[[10.0, -10.0]]]])
    target = torch.tensor([[[[1.0, 0.0]]]])
    assert float(bce_dice_loss(logits, target)) < 1e-3
    assert float(bce_dice_loss(-logits, target)) > 10


def test_cosine_schedule_with_warmup():
    assert lr_at(0, 1000, 2e-4, 1e-6, 100) == pytest.approx(2e-6)
    assert lr_at(100, 1000, 2e-4, 1e-6, 100) == pytest.approx(2e-4)
    assert lr_at(1000, 1000, 2e-4, 1e-6, 100) == pytest.approx(1e-6)


def test_loss_decreases_on_a_fixed_real_batch(shared, tiny_cfg):
    d = shared / "massachusetts-roads-cskanani"
    img = np.asarray(Image.open(d / "images" / "2.jpg").convert("RGB"))[:128, :128].astype(np.float32)
    lab = read_label(d / "labels" / "2.jpg")[0][:128, :128].astype(np.float32)
    from roadmap_cli.nn import build_model
    torch.manual_seed(0)
    m = build_model(tiny_cfg).train()
    opt = torch.optim.AdamW(m.parameters(), 1e-3)
    x = m.normalize(torch.from_numpy(img).permute(2, 0, 1)[None])
    y = torch.from_numpy(lab)[None, None]
    losses = []
    for _ in range(30):
        loss = bce_dice_loss(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.75 * losses[0]


def _opts(tmp_path, root, yaml_path, **over):
    o = dict(epochs=2, batch_size=2, crop=64, steps_per_epoch=3, val_tile=64, val_overlap=16, ckpt_every=2,
             warmup_steps=0)
    o.update(over)
    return TrainOptions(dataset="folder", root=root, out=tmp_path / "run", model=str(yaml_path), val_names="t3",
                        device="cpu", overrides=o)


def test_train_writes_checkpoints_metrics_and_summary(tmp_path, tiny_cfg):
    root = make_folder_dataset(tmp_path / "data")
    y = write_tiny_yaml(tmp_path / "tiny.yaml", tiny_cfg)
    best = run_train(_opts(tmp_path, root, y))
    run = tmp_path / "run"
    assert best.exists() and (run / "last.pt").exists()
    rows = (run / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,step,loss,lr") and "apls" in rows[0] and len(rows) == 3
    summary = yaml.safe_load((run / "summary.yaml").read_text())
    assert summary["val"] == ["t3"] and "t3" not in summary["train"]
    ck = torch.load(best, weights_only=True)
    assert ck["format"] == "roadmap-checkpoint" and "val_metrics" in ck
    with pytest.raises(UserError, match="already holds a run"):
        run_train(_opts(tmp_path, root, y))


def test_resume_after_kill_is_exact(tmp_path, tiny_cfg, monkeypatch):
    root = make_folder_dataset(tmp_path / "data")
    y = write_tiny_yaml(tmp_path / "tiny.yaml", tiny_cfg)
    torch.manual_seed(123)
    run_train(_opts(tmp_path / "a", root, y))
    full = torch.load(tmp_path / "a" / "run" / "last.pt", weights_only=True)

    import roadmap_cli.train as tr
    with interrupted_when(monkeypatch, tr, "bce_dice_loss", nth_call(5)):  # step 5, after the step-4 checkpoint
        run_train(_opts(tmp_path / "b", root, y))
    o = _opts(tmp_path / "b", root, y)
    o.resume = True
    run_train(o)
    resumed = torch.load(tmp_path / "b" / "run" / "last.pt", weights_only=True)
    assert resumed["step"] == full["step"] == 6
    for k in full["model"]:
        assert torch.equal(full["model"][k], resumed["model"][k]), k


def test_massachusetts_layouts(tmp_path, shared):
    src = shared / "massachusetts-roads-movehack"
    off = tmp_path / "official"
    for split in ("train", "valid"):
        (off / split / "sat").mkdir(parents=True)
        (off / split / "map").mkdir(parents=True)
    Image.open(src / "sat_1024" / "10078660_15.png").save(off / "train" / "sat" / "10078660_15.tiff")
    Image.open(src / "map_1024" / "10078660_15.png").save(off / "train" / "map" / "10078660_15.tif")
    pairs = massachusetts_pairs(off, "train")
    assert [p.stem for p in pairs] == ["10078660_15"]
    kag = tmp_path / "kaggle" / "tiff"
    (kag / "val").mkdir(parents=True)
    (kag / "val_labels").mkdir()
    Image.open(src / "sat_1024" / "10228690_13.png").save(kag / "val" / "10228690_13.tiff")
    Image.open(src / "map_1024" / "10228690_13.png").save(kag / "val_labels" / "10228690_13.tif")
    assert [p.stem for p in massachusetts_pairs(tmp_path / "kaggle", "valid")] == ["10228690_13"]
    with pytest.raises(UserError, match="not a Massachusetts Roads folder"):
        massachusetts_pairs(tmp_path, "test")


def test_massachusetts_patches_1500_to_1024():
    assert patch_origins(1500, 1500, 1024, 476) == [(0, 0), (0, 476), (476, 0), (476, 476)]


def test_real_tiles_dataset_and_binarisation(shared):
    pairs = build_pairs("massachusetts", shared / "massachusetts-roads-cskanani", "train", val_names="5,12")
    assert len(pairs) == 9 and {p.stem for p in pairs}.isdisjoint({"5", "12"})
    ds = RoadDataset(pairs[:1], augment=False)
    assert len(ds) == 4  # 4 overlapping 1024 patches per 1500 image
    img, lab = ds.get(3, 0)
    assert img.shape == (1024, 1024, 3) and set(np.unique(lab)) <= {0.0, 1.0}


def test_deepglobe_split_is_seeded_8_1_1_and_saved(tmp_path):
    root = tmp_path / "dg"
    (root / "train").mkdir(parents=True)
    for i in range(50):
        Image.new("RGB", (8, 8)).save(root / "train" / f"{i}_sat.jpg")
        Image.new("L", (8, 8)).save(root / "train" / f"{i}_mask.png")
    split = deepglobe_split(root, seed=0)
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (40, 5, 5)
    assert json.loads((root / "roadmap_split.json").read_text()) == split
    assert set(split["train"]).isdisjoint(split["val"]) and set(split["val"]).isdisjoint(split["test"])


def test_bad_dataset_folders(tmp_path):
    root = make_folder_dataset(tmp_path / "d")
    os.remove(root / "labels" / "t1.png")
    with pytest.raises(UserError, match="have no label"):
        build_pairs("folder", root, "train", val_names="t0")
    root2 = make_folder_dataset(tmp_path / "e")
    Image.new("L", (50, 50)).save(root2 / "labels" / "t1.png")
    pairs = build_pairs("folder", root2, "train", val_names="t0")
    with pytest.raises(UserError, match="but its label"):
        RoadDataset(pairs)
    with pytest.raises(UserError, match="does not exist"):
        build_pairs("folder", tmp_path / "nope", "train", val_names="t0")
    with pytest.raises(UserError, match="--val names not in the dataset"):
        build_pairs("folder", root2, "train", val_names="zzz")


def test_datasets_download_offline_is_clear(cli, tmp_path, monkeypatch):
    import urllib.request

    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    code, _, err = cli("datasets", "download", "massachusetts", "--root", tmp_path)
    assert code == 3 and "cannot reach" in err and "{train,valid,test}/{sat,map}" in err


def test_datasets_download_massachusetts_from_a_mirror_records_and_verifies_checksums(cli, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    for split in ("train", "valid", "test"):
        for kind, ext in (("sat", ".tiff"), ("map", ".tif")):
            d = mirror / split / kind
            d.mkdir(parents=True)
            names = [f"{split}_{i}{ext}" for i in range(2)]
            for n in names:
                (d / n).write_bytes(f"{split}/{kind}/{n}".encode() * 100)
            links = "".join(f'<a href="{n}">{n}</a>' for n in names)
            (d / "index.html").write_text(f"<html><body>{links}</body></html>")
    monkeypatch.setenv("ROADMAP_MASS_MIRROR", mirror.as_uri())
    root = tmp_path / "mass"
    code, _, err = cli("datasets", "download", "massachusetts", "--root", root)
    assert code == 0, err
    sums = (root / "SHA256SUMS").read_text().splitlines()
    assert len(sums) == 12 and any(line.endswith("  valid/map/valid_1.tif") for line in sums)
    assert (root / "test" / "sat" / "test_0.tiff").read_bytes() == (mirror / "test" / "sat" / "test_0.tiff").read_bytes()
    assert not list(root.rglob("index.html")) and not list(root.rglob("*.part"))
    code, _, err = cli("datasets", "download", "massachusetts", "--root", root)  # re-run: verified, nothing new
    assert code == 0, err
    assert (root / "SHA256SUMS").read_text().splitlines() == sums
    (root / "train" / "map" / "train_0.tif").write_bytes(b"corrupted")
    code, _, err = cli("datasets", "download", "massachusetts", "--root", root)
    assert code == 2 and "train_0.tif exists but its sha256 does not match" in err


@pytest.mark.slow
def test_ddp_two_processes_gloo(tmp_path, tiny_cfg):
    root = make_folder_dataset(tmp_path / "data")
    y = write_tiny_yaml(tmp_path / "tiny.yaml", tiny_cfg)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "roadmap_cli", "train", "--dataset", "folder", "--root", str(root), "--val", "t3",
           "--model", str(y), "--out", str(tmp_path / "ddp"), "--device", "cpu", "--epochs", "1",
           "--steps-per-epoch", "2", "--crop", "64", "--batch-size", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "ddp" / "best.pt").exists() and (tmp_path / "ddp" / "last.pt").exists()


def test_random_crops_differ_within_an_epoch_and_are_reproducible(shared):
    pairs = build_pairs("massachusetts", shared / "massachusetts-roads-cskanani", "train", val_names="5,12")
    ds = RoadDataset(pairs[:1], crop=64, seed=0)
    a, b = ds.get(0, 0, draw=0)[0], ds.get(0, 0, draw=1)[0]
    assert not np.array_equal(a, b)  # the same image drawn twice in an epoch gives two different crops
    assert np.array_equal(a, ds.get(0, 0, draw=0)[0])


def test_strong_color_augmentation_changes_appearance_not_labels(tmp_path):
    root = make_folder_dataset(tmp_path / "d")
    pairs = build_pairs("folder", root, "train", val_names="t3")
    basic = RoadDataset(pairs, crop=64, seed=0)
    strong = RoadDataset(pairs, crop=64, seed=0, color_aug="strong")
    diffs = 0
    for d in range(20):
        (a, la), (b, lb) = basic.get(0, 0, d), strong.get(0, 0, d)
        assert np.array_equal(la, lb) and b.min() >= 0 and b.max() <= 255
        diffs += not np.allclose(a, b)
    assert diffs >= 10
    with pytest.raises(UserError, match="color_aug"):
        RoadDataset(pairs, crop=64, color_aug="wild")


def test_scale_augmentation_zooms_image_and_label_together(tmp_path):
    root = make_folder_dataset(tmp_path / "d")  # 6 px wide horizontal road bands on 96 px tiles
    pairs = build_pairs("folder", root, "train", val_names="t3")
    plain = RoadDataset(pairs, crop=48, seed=0)
    zoom2 = RoadDataset(pairs, crop=48, seed=0, scale_aug="2,2")
    widths = {1: [], 2: []}
    for d in range(30):
        for z, ds in ((1, plain), (2, zoom2)):
            img, lab = ds.get(0, 0, d)
            assert img.shape == (48, 48, 3) and lab.shape == (48, 48)
            assert set(np.unique(lab)) <= {0.0, 1.0}
            if lab.any():
                widths[z].append(lab.sum() / 48)  # the band crosses the whole crop: area / side = width
                assert img[lab > 0].mean() > img[lab == 0].mean() + 50  # the road moved with its label
    assert max(widths[1]) == pytest.approx(6, abs=0.5)
    assert max(widths[2]) == pytest.approx(12, abs=1)
    a, b = zoom2.get(0, 0, 5), zoom2.get(0, 0, 5)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    for bad in ("3,1", "0,2", "x", "1,2,3"):
        with pytest.raises(UserError, match="scale augmentation"):
            RoadDataset(pairs, crop=48, scale_aug=bad)


def test_train_rejects_bad_scale_aug_in_one_line(cli, tmp_path):
    root = make_folder_dataset(tmp_path / "d")
    code, _, err = cli("train", "--dataset", "folder", "--root", root, "--model", "roadmap-compact", "--val", "t3",
                       "--out", tmp_path / "run", "--scale-aug", "3,1", "--max-steps", "1")
    assert code == 2
    assert "scale augmentation needs 0 < MIN <= MAX" in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_init_fine_tunes_from_a_roadmap_checkpoint(tmp_path, tiny_ckpt):
    root = make_folder_dataset(tmp_path / "data")
    o = TrainOptions(dataset="folder", root=root, out=tmp_path / "ft", model="anchor-sam-t", init=tiny_ckpt,
                     val_names="t3", device="cpu",
                     overrides=dict(epochs=1, batch_size=1, crop=64, steps_per_epoch=1, val_tile=64, val_overlap=16,
                                    warmup_steps=0, lr=1e-12))
    run_train(o)
    ck = torch.load(tmp_path / "ft" / "last.pt", weights_only=True)
    init = torch.load(tiny_ckpt, weights_only=True)
    assert ck["model_config"]["name"] == "tiny-test"  # the checkpoint's config, not --model
    w = "decoder.output_conv.weight"
    assert torch.allclose(ck["model"][w], init["model"][w], atol=1e-6)


def _final_weights(run):
    return torch.load(run / "last.pt", weights_only=True)["model"]


def _same_weights(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_kill_during_validation_at_an_epochs_end_resumes(tmp_path, tiny_cfg, monkeypatch):
    """The checkpoint interval divides the epoch: last.pt is written at the epoch's last step, then validation is
    killed; resuming used to fail for ever with UnboundLocalError ('loss')."""
    root = make_folder_dataset(tmp_path / "data")
    y = write_tiny_yaml(tmp_path / "tiny.yaml", tiny_cfg)
    over = dict(steps_per_epoch=2, ckpt_every=2)
    run_train(_opts(tmp_path / "a", root, y, **over))
    import roadmap_cli.train as tr
    with interrupted_when(monkeypatch, tr, "evaluate", nth_call(1)):
        run_train(_opts(tmp_path / "b", root, y, **over))
    assert torch.load(tmp_path / "b" / "run" / "last.pt", weights_only=True)["step"] == 2
    o = _opts(tmp_path / "b", root, y, **over)
    o.resume = True
    run_train(o)
    assert _same_weights(_final_weights(tmp_path / "a" / "run"), _final_weights(tmp_path / "b" / "run"))
    assert (tmp_path / "b" / "run" / "metrics.csv").read_text() .count("\n") == 3  # header + 2 epochs


def test_kill_between_metrics_row_and_checkpoint_writes_no_duplicate_row(tmp_path, tiny_cfg, monkeypatch):
    root = make_folder_dataset(tmp_path / "data")
    y = write_tiny_yaml(tmp_path / "tiny.yaml", tiny_cfg)
    import roadmap_cli.train as tr
    def epoch_row_written(path, *a, **k):  # the epoch's row is written, its checkpoint is not
        return path.name == "last.pt" and (path.parent / "metrics.csv").exists()

    with interrupted_when(monkeypatch, tr, "save_checkpoint", epoch_row_written):
        run_train(_opts(tmp_path / "b", root, y))
    o = _opts(tmp_path / "b", root, y)
    o.resume = True
    run_train(o)
    rows = (tmp_path / "b" / "run" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1"]


def test_training_resumes_exactly_after_sigkill_at_many_instants(tmp_path, tiny_cfg):
    """Real kill -9 of `roadmap train` at several instants (right after a checkpoint, right after a metrics row,
    during the first steps, late in the run); each resumed run ends with the uninterrupted run's weights."""
    import signal
    root = make_folder_dataset(tmp_path / "data")
    y = write_tiny_yaml(tmp_path / "tiny.yaml", tiny_cfg)
    cfg = tmp_path / "recipe.yaml"
    cfg.write_text(yaml.safe_dump(dict(steps_per_epoch=3, val_tile=64, val_overlap=16, ckpt_every=1,
                                       warmup_steps=0)))

    def cmd(out, *extra):
        return [sys.executable, "-m", "roadmap_cli", "-q", "train", "--dataset", "folder", "--root", str(root),
                "--val", "t3", "--model", str(y), "--config", str(cfg), "--epochs", "2", "--batch-size", "2",
                "--crop", "64", "--device", "cpu", "--out", str(out), *extra]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref = subprocess.run(cmd(tmp_path / "ref"), env=env, capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr
    want = _final_weights(tmp_path / "ref")
    def step_at_least(k):
        return lambda run: torch.load(run / "last.pt", weights_only=True)["step"] >= k  # raises until it exists

    triggers = [lambda run: (run / "last.pt").exists(),  # right after the first checkpoint
                lambda run: (run / "metrics.csv").exists(),  # right after the first epoch's row
                lambda run: (run / "best.pt").exists(),  # between best.pt and the epoch's last.pt
                step_at_least(4)]  # in the second epoch
    for n, trigger in enumerate(triggers):
        run = tmp_path / f"k{n}"
        p = subprocess.Popen(cmd(run), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        while p.poll() is None and time.time() < deadline:
            try:
                if trigger(run):
                    break
            except Exception:  # a checkpoint being replaced at that instant
                pass
            time.sleep(0.005)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        for _ in range(3):  # resume until done (a kill before the first checkpoint starts over)
            args = cmd(run, "--resume") if (run / "last.pt").exists() else cmd(run)
            r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
            assert r.returncode == 0, (n, r.stderr)
            if (run / "summary.yaml").exists():
                break
        assert _same_weights(want, _final_weights(run)), n
        rows = (run / "metrics.csv").read_text().splitlines()
        assert [r.split(",")[0] for r in rows[1:]] == ["0", "1"], (n, rows)
