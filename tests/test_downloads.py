"""``lms get``: the real huggingface_hub code path against a fake Hub on loopback.

The fake Hub (tests/fakehub.py) serves real GGUF files made here: tiny ones written with
the ``gguf`` package, and SmolLM2 re-written as a split GGUF that must load as one model.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import JupyterServer
from fakehub import FakeFile, FakeHub, split_gguf, tiny_gguf
from IPython.core.error import UsageError

from lms_jupyter.engine.manager import ModelManager
from lms_jupyter.engine.options import LoadRequest
from lms_jupyter.kernel import runtime
from lms_jupyter.models import downloads as dl
from lms_jupyter.models import hub as hf
from lms_jupyter.models.catalog import ModelCatalog
from lms_jupyter.models.gguf import read_header
from lms_jupyter.models.memory import estimate_memory

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def hub_env(tmp_path_factory):
    """HF_HOME in a temp dir, no telemetry, no token; restored afterwards."""
    saved = {
        k: os.environ.get(k)
        for k in ("HF_HOME", "HF_HUB_DISABLE_TELEMETRY", "HF_ENDPOINT", "HF_TOKEN")
    }
    os.environ["HF_HOME"] = str(tmp_path_factory.mktemp("hf_home"))
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ.pop("HF_TOKEN", None)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def hub(hub_env, tmp_path_factory, smollm_path):
    src = tmp_path_factory.mktemp("hub_files")
    fake = FakeHub()

    def tiny(name, quant, n=64):
        return tiny_gguf(src / name, quant, n)

    fake.add_repo(
        "bartowski/Tiny-GGUF",
        {
            "Tiny-Q4_K_M.gguf": tiny("t1.gguf", "Q4_K_M", 100),
            "Tiny-Q8_0.gguf": tiny("t2.gguf", "Q8_0", 300),
            "Tiny-F16.gguf": tiny("t3.gguf", "F16", 600),
            "mmproj-Tiny-F16.gguf": tiny("t4.gguf", "F16", 10),
            "README.md": b"# Tiny\n",
        },
        downloads=5000,
        likes=3,
    )
    fake.add_repo(
        "someone/Tiny-Finetune-GGUF",
        {"ft-Q4_K_M.gguf": tiny("f.gguf", "Q4_K_M")},
        downloads=40,
        likes=90,
    )
    for i, likes in enumerate((5, 7, 1)):  # same downloads: likes decide
        fake.add_repo(
            f"team{i}/Twin-GGUF",
            {"twin-Q4_0.gguf": tiny(f"tw{i}.gguf", "Q4_0")},
            downloads=100,
            likes=likes,
        )
    fake.add_repo(
        "nofour/Eight-GGUF",
        {
            "eight-Q2_K.gguf": tiny("e2.gguf", "Q2_K", 200),
            "eight-Q5_K_M.gguf": tiny("e5.gguf", "Q5_K_M", 500),
            "eight-Q8_0.gguf": tiny("e8.gguf", "Q8_0", 800),
            "eight-F16.gguf": tiny("e16.gguf", "F16", 1600),
        },
    )
    fake.add_repo(
        "iq/Iq-GGUF",
        {
            "iq-Q8_0.gguf": tiny("i8.gguf", "Q8_0", 800),
            "iq-IQ4_XS.gguf": tiny("i4.gguf", "IQ4_XS", 400),
        },
    )
    shards = split_gguf(smollm_path, src / "split" / "SmolLM2-Split-Q4_1.gguf", 2)
    fake.add_repo("split/Smol-Split-GGUF", {p.name: p for p in shards})
    fake.add_repo("gated/Locked-GGUF", {"locked-Q4_K_M.gguf": tiny("g.gguf", "Q4_K_M")}, gated=True)
    fake.add_repo(
        "mlx-community/Only-Safetensors",
        {"model.safetensors": b"\0" * 64, "config.json": b"{}"},
        tags=("mlx",),
    )
    fake.add_repo(
        "mirror/NoSizes-GGUF", {"ns-Q4_K_M.gguf": tiny("ns.gguf", "Q4_K_M", 90)}, sizes=False
    )
    bad = tiny("bad.gguf", "Q4_K_M", 120)
    fake.add_repo(
        "corrupt/Bad-GGUF",
        {"bad-Q4_K_M.gguf": FakeFile("bad-Q4_K_M.gguf", source=bad, corrupt=True)},
    )
    fake.add_repo(
        "huge/Huge-GGUF",
        {"huge-Q4_K_M.gguf": FakeFile("huge-Q4_K_M.gguf", data=b"", declared_size=10**16)},
    )
    big = tiny("big.gguf", "Q4_K_M", 700_000)  # ~2.8 MB: several network chunks
    fake.add_repo("resume/Big-GGUF", {"big-Q4_K_M.gguf": big})
    fake.add_repo("resume/Pausable-GGUF", {"pause-Q4_K_M.gguf": big})
    slow = tiny("slow.gguf", "Q4_K_M", 300_000)
    for name in ("slow/One-GGUF", "slow/Two-GGUF"):
        fake.add_repo(
            name, {"slow-Q4_K_M.gguf": FakeFile("slow-Q4_K_M.gguf", source=slow, throttle=0.05)}
        )
    os.environ["HF_ENDPOINT"] = fake.endpoint
    yield fake
    fake.close()


@pytest.fixture()
def models(tmp_path) -> Path:
    return tmp_path / "models"


def listed(models: Path) -> dict[str, list[str]]:
    """What the catalog lists: model key -> variant file names."""
    return {
        m.key: [v.path.name for v in m.variants]
        for m in ModelCatalog(models, include_embedded=False).models()
    }


def no_leftovers(models: Path) -> bool:
    return not list(models.rglob("*.part"))


# -- resolving -----------------------------------------------------------------------------------
def test_keyword_search_takes_the_most_downloaded_gguf_repo(hub, models):
    hub.requests.clear()
    plan = hf.resolve("tiny", models_dir=models)
    assert plan.repo_id == "bartowski/Tiny-GGUF"
    assert [h.repo_id for h in plan.hits] == ["bartowski/Tiny-GGUF", "someone/Tiny-Finetune-GGUF"]
    searches = [p for m, p, _ in hub.requests if p.startswith("/api/models?")]
    assert "filter=gguf" in searches[0] and "search=tiny" in searches[0]
    assert [v.quantization for v in plan.variants] == ["Q4_K_M", "Q8_0", "F16"]
    assert plan.variant.quantization == plan.default.quantization == "Q4_K_M"
    assert plan.projector.path == "mmproj-Tiny-F16.gguf"  # kept beside, not a variant
    assert plan.model_key == "bartowski/tiny@q4_k_m"
    assert plan.folder == models / "bartowski" / "Tiny-GGUF"


def test_equal_downloads_are_ranked_by_likes_across_result_pages(hub, models):
    hub.requests.clear()
    plan = hf.resolve("twin", models_dir=models)
    assert [h.repo_id for h in plan.hits] == [
        "team1/Twin-GGUF",
        "team0/Twin-GGUF",
        "team2/Twin-GGUF",
    ]
    assert plan.repo_id == "team1/Twin-GGUF"
    assert any("cursor=" in p for _, p, _ in hub.requests)  # followed the Link header


def test_default_variant_rules(hub, models):
    assert hf.resolve("iq/Iq-GGUF", models_dir=models).variant.quantization == "IQ4_XS"

    roomy = hf.resolve("nofour/Eight-GGUF", models_dir=models, available_bytes=1 << 40)
    assert roomy.variant.quantization == "Q5_K_M"  # nearest to 4 bits
    assert "nearest" in roomy.note
    sizes = {v.quantization: v.size for v in roomy.variants}
    header = read_header(hub.repos["nofour/Eight-GGUF"].files["eight-Q2_K.gguf"].source)
    runtime_bytes = estimate_memory("eight", header, 0, 256).total_bytes  # KV + compute
    hub.requests.clear()
    # room for Q2_K and its runtime memory, not for Q5_K_M
    room = runtime_bytes + (sizes["Q2_K"] + sizes["Q5_K_M"]) // 2
    tight = hf.resolve("nofour/Eight-GGUF", models_dir=models, available_bytes=lambda: room)
    assert tight.variant.quantization == "Q2_K"
    ranged = [h for m, p, h in hub.requests if "/resolve/" in p]
    assert ranged and ranged[0]["range"].startswith("bytes=0-")
    none = hf.resolve("nofour/Eight-GGUF", models_dir=models, available_bytes=1)
    assert none.variant.quantization == "Q2_K" and "no variant fits" in none.note


def test_quantization_choice(hub, models):
    assert hf.resolve("bartowski/Tiny-GGUF@q8_0", models_dir=models).variant.quantization == "Q8_0"
    assert hf.resolve("bartowski/Tiny-GGUF", "F16", models_dir=models).variant.quantization == "F16"
    assert hf.resolve("tiny@F16", models_dir=models).variant.quantization == "F16"
    with pytest.raises(hf.DownloadError) as err:
        hf.resolve("bartowski/Tiny-GGUF@q3_k_s", models_dir=models)
    assert err.value.message == (
        "bartowski/Tiny-GGUF has no q3_k_s variant. Available: Q4_K_M, Q8_0, F16."
    )


@pytest.mark.parametrize(
    "url, quant",
    [
        ("https://huggingface.co/bartowski/Tiny-GGUF", "Q4_K_M"),
        ("https://hf.co/bartowski/Tiny-GGUF/tree/main", "Q4_K_M"),
        ("https://huggingface.co/bartowski/Tiny-GGUF/blob/main/Tiny-Q8_0.gguf", "Q8_0"),
        (
            "https://huggingface.co/bartowski/Tiny-GGUF/resolve/main/Tiny-F16.gguf?download=true",
            "F16",
        ),
        ("{endpoint}/bartowski/Tiny-GGUF/blob/main/Tiny-F16.gguf", "F16"),
    ],
)
def test_url_forms(hub, models, url, quant):
    plan = hf.resolve(url.format(endpoint=hub.endpoint), models_dir=models)
    assert plan.repo_id == "bartowski/Tiny-GGUF" and plan.variant.quantization == quant


@pytest.mark.parametrize(
    "spec, code, message",
    [
        (
            "https://example.com/bartowski/Tiny-GGUF",
            "invalid_request",
            "Only https://huggingface.co URLs are supported.",
        ),
        ("https://huggingface.co/datasets/a/b", "invalid_request", "is not a model repository"),
        (
            "https://huggingface.co/bartowski/Tiny-GGUF/blob/main/mmproj-Tiny-F16.gguf",
            "invalid_request",
            "is a multimodal projector, not a model",
        ),
        (
            "https://huggingface.co/bartowski/Tiny-GGUF/blob/main/README.md",
            "invalid_request",
            "README.md is not a GGUF model file.",
        ),
        ("nobody/Nothing-GGUF", "model_not_found", 'No model repository "nobody/Nothing-GGUF"'),
        (
            "qwertyuiop",
            "model_not_found",
            'No GGUF models on the Hugging Face Hub match "qwertyuiop".',
        ),
        (
            "mlx-community/Only-Safetensors",
            "no_gguf",
            "mlx-community/Only-Safetensors has no GGUF files (only safetensors / MLX files)",
        ),
        ("gated/Locked-GGUF", "gated_repo", "gated/Locked-GGUF is a gated repository"),
    ],
)
def test_clear_errors(hub, models, spec, code, message):
    with pytest.raises(hf.DownloadError) as err:
        hf.resolve(spec, models_dir=models)
    assert err.value.code == code
    assert message in err.value.message and "\n" not in err.value.message


def test_offline_is_one_clear_error(hub_env, models):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    for spec in ("tiny", "bartowski/Tiny-GGUF"):
        with pytest.raises(hf.DownloadError) as err:
            hf.resolve(spec, models_dir=models, hub=hf.Hub(f"http://127.0.0.1:{closed}"))
        assert err.value.code == "offline" and err.value.status == 503
        assert err.value.message.startswith(
            f"Cannot reach the Hugging Face Hub at http://127.0.0.1:{closed} (offline?)"
        )


# -- downloading ---------------------------------------------------------------------------------
def test_download_lands_in_the_catalog_with_the_projector_beside_it(hub, models):
    plan = hf.resolve("tiny", models_dir=models)
    seen = []
    paths = dl.download(plan, progress=lambda done, total, speed: seen.append((done, total)))
    folder = models / "bartowski" / "Tiny-GGUF"
    assert paths == [folder / "mmproj-Tiny-F16.gguf", folder / "Tiny-Q4_K_M.gguf"]
    assert listed(models) == {"tiny": ["Tiny-Q4_K_M.gguf"]}  # the projector is not a model
    assert (folder / "mmproj-Tiny-F16.gguf").is_file() and no_leftovers(models)
    assert seen[-1] == (plan.total_size, plan.total_size)
    assert all(b >= a for (a, _), (b, _) in zip(seen, seen[1:], strict=False))
    again = hf.resolve("bartowski/Tiny-GGUF", models_dir=models)
    assert again.already_downloaded
    assert not hf.resolve("bartowski/Tiny-GGUF@q8_0", models_dir=models).already_downloaded


def test_split_gguf_downloads_whole_and_loads_as_one_model(hub, models):
    plan = hf.resolve("split/Smol-Split-GGUF", models_dir=models)
    assert len(plan.variants) == 1 and len(plan.variant.files) == 2
    dl.download(plan)
    files = sorted(p.name for p in (models / "split" / "Smol-Split-GGUF").iterdir())
    assert files == [
        "SmolLM2-Split-Q4_1-00001-of-00002.gguf",
        "SmolLM2-Split-Q4_1-00002-of-00002.gguf",
    ]
    catalog = ModelCatalog(models, include_embedded=False)
    (info,) = catalog.models()
    assert info.key == "smol-split" and info.variants[0].size_bytes == plan.total_size
    manager = ModelManager(catalog)
    try:
        model = manager.load(LoadRequest(plan.model_key, context_length=256))
        assert model.engine_stats()["n_vocab"] == 49152  # SmolLM2's vocabulary, from both shards
        assert model.tokenize("Hello world")
    finally:
        manager.shutdown()


def test_interrupted_split_download_shows_nothing_then_resumes(hub, models, monkeypatch):
    monkeypatch.setattr(dl, "RETRY_WAIT", 0.0)  # the retries themselves are what we test
    plan = hf.resolve("split/Smol-Split-GGUF", models_dir=models)
    second = plan.variant.files[1]
    hub.cut(second.path, after=1_000_000, times=dl.MAX_ATTEMPTS)  # every retry breaks
    with pytest.raises(hf.DownloadError) as err:
        dl.download(plan)
    assert err.value.code == "interrupted" and "run the same command again" in err.value.message
    assert listed(models) == {}  # the first shard is verified but not renamed yet
    part = dl.part_path(plan.target(second))
    assert part.stat().st_size == 1_000_000
    hub.requests.clear()
    dl.download(plan)
    assert hub.downloads_of(second.path)[0]["range"] == "bytes=1000000-"
    assert hub.downloads_of(plan.variant.files[0].path) == []  # verified .part reused
    assert list(listed(models)) == ["smol-split"] and no_leftovers(models)


def test_a_cut_connection_resumes_with_range_in_the_same_run(hub, models):
    plan = hf.resolve("resume/Big-GGUF", models_dir=models)
    name = plan.variant.primary.path
    hub.requests.clear()
    hub.cut(name, after=1_500_000, times=1)
    dl.download(plan)
    ranges = [h.get("range") for h in hub.downloads_of(name)]
    assert ranges == [None, "bytes=1500000-"]
    target = plan.target(plan.variant.primary)
    assert target.stat().st_size == plan.variant.size and no_leftovers(models)


def test_pause_and_resume_a_job(hub, models):
    plan = hf.resolve("resume/Pausable-GGUF", models_dir=models)
    job = dl.DownloadJob(plan)
    original = job._progress

    def pause_midway(done, total, speed):
        original(done, total, speed)
        if 0 < done < total and not job._cancel.is_set() and job.status == dl.DOWNLOADING:
            job.pause(wait=None)  # as Ctrl+C or a server shutdown would

    job._progress = pause_midway
    job.start()
    assert job.wait(30) and job.status == dl.PAUSED
    part = dl.part_path(plan.target(plan.variant.primary))
    kept = part.stat().st_size
    assert 0 < kept < plan.total_size and listed(models) == {}
    job._progress = original
    hub.requests.clear()
    job.resume()
    assert job.wait(30) and job.status == dl.COMPLETED, job.error
    assert hub.downloads_of(plan.variant.primary.path)[0]["range"] == f"bytes={kept}-"
    assert job.as_status()["downloaded_bytes"] == plan.total_size
    assert list(listed(models)) == ["pausable"]


def test_a_part_file_in_use_elsewhere_is_left_alone(hub, models):
    import fcntl

    plan = hf.resolve("bartowski/Tiny-GGUF@f16", models_dir=models)
    part = dl.part_path(plan.target(plan.variant.primary))
    part.parent.mkdir(parents=True)
    with open(part, "ab") as other:  # as another process downloading the same file
        fcntl.flock(other.fileno(), fcntl.LOCK_EX)
        with pytest.raises(hf.DownloadError) as err:
            dl.download(plan)
    assert err.value.code == "download_in_progress"
    assert err.value.message == "Tiny-F16.gguf is already being downloaded by another process."
    dl.download(plan)  # once it is free
    assert listed(models) == {"tiny": ["Tiny-F16.gguf"]}


def test_checksum_mismatch_installs_nothing(hub, models):
    plan = hf.resolve("corrupt/Bad-GGUF", models_dir=models)
    with pytest.raises(hf.DownloadError) as err:
        dl.download(plan)
    assert err.value.code == "checksum_mismatch"
    assert "does not match the Hub's checksum" in err.value.message
    assert listed(models) == {} and no_leftovers(models)
    assert not plan.target(plan.variant.primary).exists()


def test_sizes_from_the_tree_when_the_repo_info_has_none(hub, models):
    hub.requests.clear()
    plan = hf.resolve("mirror/NoSizes-GGUF", models_dir=models)
    assert any("/tree/" in p and "recursive=true" in p for _, p, _ in hub.requests)
    assert plan.variant.primary.sha256 and plan.variant.size > 0
    dl.download(plan)
    assert listed(models) == {"nosizes": ["ns-Q4_K_M.gguf"]}


def test_not_enough_disk(hub, models):
    plan = hf.resolve("huge/Huge-GGUF", models_dir=models)
    with pytest.raises(hf.DownloadError) as err:
        dl.download(plan)
    assert err.value.code == "not_enough_disk"
    assert err.value.message.startswith(
        f"Not enough disk space in {models}: the download needs 10000.00 TB but only"
    )
    assert not plan.folder.exists() or not any(plan.folder.iterdir())


def test_gated_repo_needs_the_right_token(hub, models, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_wrongtoken0123456789")
    plan = hf.resolve("gated/Locked-GGUF", models_dir=models)
    with pytest.raises(hf.DownloadError) as err:
        dl.download(plan)
    assert err.value.code == "gated_repo" and err.value.status == 403
    monkeypatch.setenv("HF_TOKEN", hub.token)
    dl.download(plan)
    assert listed(models) == {"locked": ["locked-Q4_K_M.gguf"]}
    sent = hub.downloads_of("locked-Q4_K_M.gguf")[-1]["authorization"]
    assert sent == f"Bearer {hub.token}"


# -- the fronts ----------------------------------------------------------------------------------
def run_cli(hub, models, *args, stdin=None):
    env = dict(os.environ, HF_ENDPOINT=hub.endpoint, LMS_JUPYTER_MODELS_DIR=str(models))
    return subprocess.run(
        [sys.executable, "-m", "lms_jupyter.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_console_script_get(hub, models):
    result = run_cli(hub, models, "get", "-y", "bartowski/Tiny-GGUF@q8_0")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Resolution completed. Downloading bartowski/Tiny-GGUF Q8_0 (")
    assert lines[1:] == ["Download completed. To use, run: lms-jupyter load bartowski/tiny@q8_0"]
    result = run_cli(hub, models, "ls", "--llm")
    assert "tiny (1 variant)" in result.stdout
    result = run_cli(hub, models, "get", "bartowski/Tiny-GGUF@q8_0")
    assert result.stdout.startswith(
        "Model already downloaded (bartowski/Tiny-GGUF Q8_0). "
        "To use, run: lms-jupyter load bartowski/tiny@q8_0"
    )
    # --select: the second search result, then its only variant (Enter: the default)
    result = run_cli(hub, models, "get", "--select", "tiny", stdin="2\n\n")
    assert result.returncode == 0, result.stderr
    assert "  2) someone/Tiny-Finetune-GGUF  (40 downloads, 90 likes)" in result.stdout
    assert "  1) Q4_K_M  " in result.stdout and "(default)" in result.stdout
    assert "lms-jupyter load someone/tiny-finetune" in result.stdout
    assert set(listed(models)) == {"tiny", "tiny-finetune"}
    for args, message in [
        (["get", "--mlx", "x"], "Error: MLX models run only on Apple"),
        (["get", "-y", "nobody/Nothing-GGUF"], 'Error: No model repository "nobody/Nothing-GGUF"'),
    ]:
        result = run_cli(hub, models, *args)
        assert result.returncode == 1 and result.stdout == ""
        assert result.stderr.startswith(message) and result.stderr.count("\n") == 1


@pytest.fixture()
def shell(models):
    from IPython.core.interactiveshell import InteractiveShell
    from test_magics import CapturingPublisher

    manager = ModelManager(ModelCatalog(models))
    previous = runtime.set_manager(manager)
    ip = InteractiveShell.instance()
    ip.extension_manager.load_extension("lms_jupyter")
    original = ip.display_pub
    ip.display_pub = CapturingPublisher(shell=ip)
    yield ip
    ip.display_pub = original
    ip.extension_manager.unload_extension("lms_jupyter")
    runtime.set_manager(previous)
    manager.shutdown()


def test_magic_get_with_a_widget_progress_bar(hub, models, shell, capsys):
    shell.run_line_magic("lms", "get -y tiny")
    out = capsys.readouterr().out
    assert 'Searching the Hugging Face Hub for "tiny"...' in out
    assert "Download completed. To use, run: %lms load bartowski/tiny@q4_k_m" in out
    boxes = [
        m["data"]
        for m in shell.display_pub.messages
        if "application/vnd.jupyter.widget-view+json" in m["data"]
    ]
    assert boxes, "the progress bar is an ipywidgets HBox"
    assert set(listed(models)) == {"tiny"}
    assert runtime.get_manager().resolve_model("bartowski/tiny@q4_k_m")


def test_magic_get_select_gives_a_picker(hub, models, shell, capsys):
    picker = shell.run_line_magic("lms", "get --select tiny")
    from lms_jupyter.kernel.progress.download import DownloadPicker

    assert isinstance(picker, DownloadPicker)
    assert picker.repo.value == "bartowski/Tiny-GGUF"
    labels = [label for label, _ in picker.variant.options]
    assert labels[0].startswith("Q4_K_M") and labels[0].endswith("(default)")
    picker.variant.value = 1  # Q8_0
    job = picker.start()
    assert picker.done.wait(30) and job.status == dl.COMPLETED
    assert picker.message.value.startswith(
        "Download completed. To use, run: %lms load bartowski/tiny@q8_0"
    )
    picker.repo.value = "someone/Tiny-Finetune-GGUF"  # re-reads that repo's variants
    assert [label.split()[0] for label, _ in picker.variant.options] == ["Q4_K_M"]
    picker.start()
    assert picker.done.wait(30)
    assert listed(models) == {"tiny": ["Tiny-Q8_0.gguf"], "tiny-finetune": ["ft-Q4_K_M.gguf"]}
    with pytest.raises(UsageError, match="has no GGUF files"):
        shell.run_line_magic("lms", "get mlx-community/Only-Safetensors")


# -- HTTP ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def download_server(hub, tmp_path_factory):
    root = tmp_path_factory.mktemp("dl_server")
    models = tmp_path_factory.mktemp("dl_models")
    srv = JupyterServer(
        root,
        models,
        env={
            "HF_ENDPOINT": hub.endpoint,
            "HF_HOME": os.environ["HF_HOME"],
            "HF_HUB_DISABLE_TELEMETRY": "1",
        },
    )
    srv.models = models
    yield srv
    srv.stop()


def api(server, method, path, body=None):
    return httpx.request(
        method, server.url + "lms/api/" + path, json=body, headers=server.headers, timeout=60
    )


def wait_status(server, job_id, wanted, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        status = api(server, "GET", f"v1/models/download/status/{job_id}").json()
        if status["status"] in wanted or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def test_http_download_jobs_run_side_by_side(hub, download_server):
    srv = download_server
    started = [
        api(srv, "POST", "v1/models/download", {"model": name}).json()
        for name in ("slow/One-GGUF", "slow/Two-GGUF")
    ]
    for job in started:
        assert set(job) == {"job_id", "status", "total_size_bytes", "started_at"}
        assert job["status"] == "downloading" and job["job_id"].startswith("job_")
        assert job["started_at"].endswith("Z")
    ids = [job["job_id"] for job in started]
    both = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # both in flight at once, the server answering
        rows = [api(srv, "GET", f"v1/models/download/status/{i}").json() for i in ids]
        assert httpx.get(srv.url + "api/status", headers=srv.headers).status_code == 200
        if all(
            r["status"] == "downloading" and 0 < r["downloaded_bytes"] < r["total_size_bytes"]
            for r in rows
        ):
            both = rows
            break
        if any(r["status"] != "downloading" for r in rows):
            break
        time.sleep(0.02)
    assert both is not None, "the two jobs never ran at the same time"
    for job_id in ids:
        done = wait_status(srv, job_id, ("completed", "failed"))
        assert done["status"] == "completed", done
        assert done["downloaded_bytes"] == done["total_size_bytes"]
        assert done["completed_at"].endswith("Z")
    keys = {m["id"] for m in httpx.get(srv.api_url + "/models", headers=srv.headers).json()["data"]}
    assert {"one", "two"} <= keys
    v0 = {m["id"] for m in api(srv, "GET", "v0/models").json()["data"]}
    assert {"one", "two"} <= v0
    again = api(srv, "POST", "v1/models/download", {"model": "slow/One-GGUF"}).json()
    assert again["status"] == "already_downloaded" and "job_id" not in again


def test_http_download_with_quantization_and_errors(hub, download_server):
    srv = download_server
    r = api(
        srv,
        "POST",
        "v1/models/download",
        {"model": "https://huggingface.co/bartowski/Tiny-GGUF", "quantization": "f16"},
    )
    assert r.status_code == 200, r.text
    done = wait_status(srv, r.json()["job_id"], ("completed", "failed"))
    assert done["status"] == "completed" and done["quantization"] == "F16"
    assert (srv.models / "bartowski" / "Tiny-GGUF" / "Tiny-F16.gguf").is_file()

    r = api(srv, "POST", "v1/models/download", {"model": "corrupt/Bad-GGUF"})
    failed = wait_status(srv, r.json()["job_id"], ("completed", "failed"))
    assert failed["status"] == "failed" and "checksum" in failed["error"]

    cases = [
        ({}, 400, "invalid_request", "'model' is required"),
        ({"model": "nobody/Nothing-GGUF"}, 404, "model_not_found", "No model repository"),
        (
            {"model": "bartowski/Tiny-GGUF", "quantization": "q9"},
            400,
            "invalid_request",
            "has no q9 variant",
        ),
    ]
    for body, status, kind, message in cases:
        r = api(srv, "POST", "v1/models/download", body)
        assert r.status_code == status, r.text
        error = r.json()["error"]
        assert error["type"] == kind and message in error["message"]
    r = api(srv, "GET", "v1/models/download/status/job_nope")
    assert r.status_code == 404 and r.json()["error"]["type"] == "job_not_found"
    r = httpx.post(srv.url + "lms/api/v1/models/download", json={"model": "x/y"})
    assert r.status_code in (401, 403)


# -- ls --variants and ps --json, as LM Studio prints them ----------------------------------------
LMS_PS_KEYS = [
    "type",
    "modelKey",
    "format",
    "displayName",
    "publisher",
    "path",
    "sizeBytes",
    "indexedModelIdentifier",
    "deviceIdentifier",
    "paramsString",
    "architecture",
    "quantization",
    "identifier",
    "ttlMs",
    "lastUsedTime",
    "vision",
    "trainedForToolUse",
    "maxContextLength",
    "contextLength",
    "status",
    "queued",
    "parallel",
]  # lmstudio-api.md §4, an observed LM Studio 0.4 row, in its order


def test_ls_variants_and_ps_json_as_lm_studio(hub, models, shell, capsys):
    for quant in ("q4_k_m", "q8_0"):
        dl.download(hf.resolve(f"bartowski/Tiny-GGUF@{quant}", models_dir=models))
    capsys.readouterr()
    shell.run_line_magic("lms", "ls --variants")
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if line.startswith("LLM "))
    assert header.split() == ["LLM", "PARAMS", "ARCH", "SIZE", "DEVICE"]
    at = lines.index("tiny (2 variants)")
    assert lines[at + 1].startswith(" * bartowski/tiny@q4_k_m    ")  # the default
    assert lines[at + 2].startswith("   bartowski/tiny@q8_0    ")
    assert lines[at + 1].split()[-1] == "Local"  # the base row has only the name

    shell.run_line_magic("lms", "ls tiny --json")
    variants = json.loads(capsys.readouterr().out)
    assert [v["modelKey"] for v in variants] == ["bartowski/tiny@q4_k_m", "bartowski/tiny@q8_0"]
    assert variants[1]["path"] == "bartowski/Tiny-GGUF/Tiny-Q8_0.gguf"
    assert variants[1]["quantization"] == {"name": "Q8_0", "bits": 8}
    shell.run_line_magic("lms", "ls --json --variants")
    groups = {g["model"]["modelKey"]: g for g in json.loads(capsys.readouterr().out)}
    assert groups["tiny"]["model"]["selectedVariant"] == "bartowski/tiny@q4_k_m"
    assert len(groups["tiny"]["variants"]) == 2
    with pytest.raises(UsageError, match="Cannot combine a model key argument with --variants"):
        shell.run_line_magic("lms", "ls tiny --variants")

    shell.run_line_magic("lms", "load smollm2-135m-instruct -c 256 --identifier smol --ttl 60")
    capsys.readouterr()
    shell.run_line_magic("lms", "ps --json")
    (row,) = json.loads(capsys.readouterr().out)
    assert list(row)[: len(LMS_PS_KEYS)] == LMS_PS_KEYS
    assert row["identifier"] == "smol" and row["ttlMs"] == 60_000 and row["parallel"] == 4
    assert (
        row["path"]
        == row["indexedModelIdentifier"]
        == "HuggingFaceTB/SmolLM2-135M-Instruct.Q4_1.gguf"
    )
    assert row["deviceIdentifier"] is None and "variants" not in row
    assert row["status"] == "idle" and row["queued"] == 0 and row["contextLength"] == 256
