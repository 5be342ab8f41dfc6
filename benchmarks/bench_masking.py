"""Benchmark: fmriflow's streaming masking against nilearn's NiftiMasker.

What is compared
    ``fmriflow.masking.extract_masked`` writing into a memory-mapped ``.npy``
    opened with ``fmriflow.io.npy_writer`` (as the workflow's ``mask`` node
    does, mask loaded with ``fmriflow.io.load_mask``), against
    ``nilearn.maskers.NiftiMasker(mask_img=...).fit_transform(bold_path)``;
    both without smoothing and with ``smoothing_fwhm=6`` (skip the latter
    with ``--no-smoothing``).

Data
    A Haxby-sized 4D image, 40 x 64 x 64 x 1452 int16 (about 476 MB before
    compression), generated deterministically and gzipped with nibabel into a
    temporary folder (or ``--data-dir``, where it is reused if present): a
    smooth "head" intensity plus Gaussian temporal noise, so that it
    compresses about as well as a real EPI run (to about half). The mask is
    an ellipsoid of 37,696 voxels. ``--quick`` uses 300 volumes instead of 1452.

How it is measured
    Each method runs in its own freshly spawned Python process (``spawn``
    start method), so nothing the parent holds (the data generator, the other
    method's arrays) counts. In the child, the imports are done first; then
    the call is timed with ``time.perf_counter`` (wall) and ``getrusage``
    (CPU time of all the child's threads) and the peak resident memory
    is read from ``VmHWM`` in ``/proc/self/status``. ``VmHWM`` belongs to the
    child's own address space, which ``exec`` creates anew; ``ru_maxrss``
    would not do, as Linux carries the parent's peak into it across ``exec``
    (and ``RUSAGE_CHILDREN`` is a maximum over all children). The peak
    includes the interpreter and the imported libraries (shown separately as
    "after imports") and, for fmriflow, the pages of the memory-mapped output
    file that were resident. The input file is read once beforehand, so both
    methods read it from the page cache. With ``--repeat N`` the methods run
    N times each, interleaved, each time in a new process; the fastest run
    is kept (and the largest peak), which damps noise from other jobs on the
    machine.

Checks
    Decompression floor: the ``.nii.gz`` read to its end through ``gzip``
    (nothing kept), timed the same way; fmriflow's masking without
    smoothing is printed as a multiple of it (target: at most 1.5x).

    Both outputs are saved and compared in the parent: same shape, maximum
    absolute difference within 16 float32 epsilons of the largest value, and
    the same column order (see :func:`compare`). Targets from
    the issue: at least 2x faster than nilearn, at most half its peak memory,
    values equal to float32 precision.

Run ``.venv/bin/python benchmarks/bench_masking.py [--quick]``.
"""

import argparse
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from measuring import add_run_options, in_spawned_process, measure_call, verdict, warm_page_cache

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
SHAPE = (40, 64, 64)
ZOOMS = (3.5, 3.75, 3.75)
TR = 2.5
FULL_VOLUMES = 1452
QUICK_VOLUMES = 300
SEED = 0
SMOOTHING_FWHM = 6.0
TARGET_SPEEDUP = 2.0
TARGET_MEMORY_RATIO = 0.5
#: Masking (no smoothing) within this factor of decompressing the file alone.
TARGET_DECOMPRESSION_RATIO = 1.5
#: Values count as equal when they differ by at most this many float32
#: epsilons of the largest absolute value.
TOLERANCE_EPS = 16
MB = 1e6


# --- data ------------------------------------------------------------------


def ellipsoid(shape, scale):
    """Boolean ellipsoid centred in ``shape`` with semi-axes ``scale * shape / 2``."""
    grid = np.indices(shape, dtype=np.float64)
    radius = np.zeros(shape)
    for axis, n in enumerate(shape):
        centre = (n - 1) / 2
        radius += ((grid[axis] - centre) / (scale * n / 2)) ** 2
    return radius <= 1.0


def brain_mask():
    """The benchmark's mask: an ellipsoid of 37,696 voxels."""
    return ellipsoid(SHAPE, 0.76)


def mean_intensity(rng):
    """A smooth "head" intensity: about 800 inside, 0 outside (float32)."""
    from scipy.ndimage import gaussian_filter

    head = ellipsoid(SHAPE, 0.9)
    texture = gaussian_filter(rng.standard_normal(SHAPE), 2.0)
    texture /= texture.std()
    return np.where(head, 800.0 + 150.0 * texture, 0.0).astype(np.float32)


def affine():
    """Voxel-to-world affine with Haxby's voxel sizes."""
    return np.diag([*ZOOMS, 1.0])


def write_bold(path, n_volumes):
    """Write the 4D int16 image volume by volume (nibabel header + gzip stream).

    Temporal noise is 2% of the mean intensity plus a thermal floor; the
    background holds small non-negative values, as in magnitude images.
    """
    import nibabel as nib
    from nibabel.openers import ImageOpener

    rng = np.random.default_rng(SEED)
    mean = mean_intensity(rng)
    sigma = 0.02 * mean + 4.0
    header = nib.Nifti1Header()
    header.set_data_dtype(np.int16)
    header.set_data_shape((*SHAPE, n_volumes))
    header.set_zooms((*ZOOMS, TR))
    header.set_xyzt_units("mm", "sec")
    header.set_qform(affine(), code=1)
    header.set_sform(affine(), code=1)
    tmp = path.with_name(f".tmp-{path.name}")
    with ImageOpener(tmp, "wb") as stream:
        header.write_to(stream)
        for _ in range(n_volumes):
            noise = rng.standard_normal(SHAPE, dtype=np.float32)
            volume = np.abs(mean + sigma * noise).round().astype(np.int16)
            stream.write(volume.tobytes(order="F"))
    tmp.replace(path)


def write_mask(path):
    """Write the mask as a uint8 NIfTI image."""
    import nibabel as nib

    nib.save(nib.Nifti1Image(brain_mask().astype(np.uint8), affine()), path)


def prepare_data(folder, n_volumes):
    """Generate (or reuse) the image and mask in ``folder``; return their paths."""
    bold = folder / f"bold_{n_volumes}.nii.gz"
    mask = folder / "mask.nii.gz"
    if not bold.exists():
        start = time.perf_counter()
        write_bold(bold, n_volumes)
        print(
            f"generated {bold} ({bold.stat().st_size / MB:.0f} MB gzipped) "
            f"in {time.perf_counter() - start:.1f} s"
        )
    if not mask.exists():
        write_mask(mask)
    warm_page_cache([bold])
    return bold, mask


# --- the methods (each runs in its own child process) ------------------------


def fmriflow_method(fwhm):
    """Import fmriflow; return a function masking an image into a ``.npy``."""
    sys.path.insert(0, str(SCRIPTS))
    import nibabel  # noqa: F401  (fmriflow.io imports it on first use: import it untimed)

    from fmriflow.io import load_mask, npy_writer
    from fmriflow.masking import bold_geometry, extract_masked

    def run(bold, mask_path, out):
        mask, _ = load_mask(mask_path)
        shape, _, _ = bold_geometry(bold)
        with npy_writer(out, (shape[3], int(mask.sum())), np.float32) as matrix:
            extract_masked(bold, mask, matrix, smoothing_fwhm=fwhm)

    return run


def nilearn_method(fwhm):
    """Import nilearn; return a function masking an image into an array."""
    from nilearn.maskers import NiftiMasker

    def run(bold, mask_path, out):
        masker = NiftiMasker(mask_img=str(mask_path), smoothing_fwhm=fwhm)
        with warnings.catch_warnings():
            # fit_transform(imgs) warns that the given mask is used instead of
            # computing one from imgs, which is what we want.
            warnings.simplefilter("ignore", UserWarning)
            return masker.fit_transform(str(bold))

    return run


def decompress(bold, chunk_bytes=1 << 25):
    """Read a ``.nii.gz`` file to its end through gzip, keeping nothing: the floor of any
    masking of it (what the file costs to read at all)."""
    import gzip

    with gzip.open(bold, "rb") as stream:
        while stream.read(chunk_bytes):
            pass


def measure_decompression(bold):
    """Time :func:`decompress` in this (child) process."""
    _, measurement = measure_call(decompress, bold)
    return measurement


#: The reference method, then the ones compared with it. Each entry returns
#: ``run(bold, mask, out)``, which writes ``out`` or returns the matrix.
REFERENCE = "nilearn"
METHODS = {REFERENCE: nilearn_method, "fmriflow": fmriflow_method}


def measure(method, bold, mask, out, fwhm):
    """Run one method in this (child) process; return its time and memory."""
    result, measurement = measure_call(METHODS[method](fwhm), bold, mask, out)
    if result is not None:
        np.save(out, result)
    return measurement


def measure_in_child(method, bold, mask, out, fwhm):
    """Run :func:`measure` in a freshly spawned Python process."""
    return in_spawned_process(measure, method, bold, mask, out, fwhm)


def measure_case(name, fwhm, bold, mask, workdir, repeat):
    """Measure every method ``repeat`` times, interleaved; keep the fastest run.

    The peak memory kept is the largest over the runs.
    """
    runs = {method: [] for method in METHODS}
    outs = {method: workdir / f"{method}_{fwhm}.npy" for method in METHODS}
    for _ in range(repeat):
        for method in METHODS:
            result = measure_in_child(method, bold, mask, outs[method], fwhm)
            runs[method].append(result)
            print(f"  {name:>14} {method:>9}: {result['seconds']:6.2f} s", flush=True)
    case = {"name": name, "results": {}, "checks": {}}
    for method, results in runs.items():
        best = min(results, key=lambda r: r["seconds"])
        case["results"][method] = {**best, "peak": max(r["peak"] for r in results)}
    for method in METHODS:
        if method != REFERENCE:
            case["checks"][method] = compare(outs[method], outs[REFERENCE])
    for out in outs.values():
        out.unlink()
    return case


# --- comparison --------------------------------------------------------------


def tolerance(largest):
    """Largest difference that counts as float32 precision, for values up to ``largest``."""
    return TOLERANCE_EPS * float(np.finfo(np.float32).eps) * largest


def compare(path, reference_path, rows_per_block=128, n_projections=8):
    """Compare a saved ``(time, voxel)`` matrix with the reference's.

    Returns the maximum absolute difference and whether the columns are in
    the same order. The latter holds if the values agree within the
    tolerance and any two reference columns differ by more than twice the
    tolerance somewhere (then no other column order could agree). That
    separation is bounded from below with a few random projections of the
    columns, each with weights of unit L1 norm: the Chebyshev distance
    between two columns' projections is at most their largest difference.
    """
    from scipy.spatial import cKDTree

    ours = np.load(path, mmap_mode="r")
    reference = np.load(reference_path, mmap_mode="r")
    if ours.shape != reference.shape:
        raise AssertionError(f"shapes differ: {ours.shape} vs {reference.shape}")
    weights = np.random.default_rng(SEED).standard_normal((n_projections, ours.shape[0]))
    weights /= np.abs(weights).sum(axis=1, keepdims=True)
    max_diff = largest = 0.0
    projections = np.zeros((ours.shape[1], n_projections))
    for start in range(0, ours.shape[0], rows_per_block):
        rows = slice(start, start + rows_per_block)
        block = np.asarray(ours[rows], dtype=np.float64)
        block_ref = np.asarray(reference[rows], dtype=np.float64)
        max_diff = max(max_diff, float(np.max(np.abs(block - block_ref))))
        largest = max(largest, float(np.max(np.abs(block_ref))))
        projections += block_ref.T @ weights[:, rows].T
    distances, _ = cKDTree(projections).query(projections, k=2, p=np.inf)
    limit = tolerance(largest)
    equal = max_diff <= limit
    return {
        "max_diff": max_diff,
        "tolerance": limit,
        "equal": equal,
        "same_order": equal and float(distances[:, 1].min()) > 2 * limit,
    }


# --- report -----------------------------------------------------------------


def summarize(case, method):
    """Ratios to the reference, and the targets met, for one method and case."""
    ours, theirs = case["results"][method], case["results"][REFERENCE]
    check = case["checks"][method]
    speedup = theirs["seconds"] / ours["seconds"]
    memory_ratio = ours["peak"] / theirs["peak"]
    return {
        **check,
        "speedup": speedup,
        "memory_ratio": memory_ratio,
        "fast": speedup >= TARGET_SPEEDUP,
        "small": memory_ratio <= TARGET_MEMORY_RATIO,
        "precise": check["equal"] and check["same_order"],
    }


def print_measurements(cases):
    """Time and memory of every method, case by case."""
    header = (
        f"{'case':<14} {'method':<9} {'wall (s)':>9} {'cpu (s)':>8} "
        f"{'peak RSS (MB)':>14} {'after imports (MB)':>19}"
    )
    print(header)
    print("-" * len(header))
    for case in cases:
        for method, r in case["results"].items():
            print(
                f"{case['name']:<14} {method:<9} {r['seconds']:>9.2f} {r['cpu']:>8.2f} "
                f"{r['peak'] / MB:>14.0f} {r['after_imports'] / MB:>19.0f}"
            )


def print_comparisons(cases):
    """Ratios to the reference and value checks; return whether all targets are met."""
    header = (
        f"{'case':<14} {'method':<9} {'time ' + REFERENCE + '/ours':>18} "
        f"{'memory ours/' + REFERENCE:>20} {'max |diff|':>11} {'tolerance':>10} "
        f"{'same columns':>13}"
    )
    print(header)
    print("-" * len(header))
    verdicts = []
    for case in cases:
        for method in case["checks"]:
            s = summarize(case, method)
            print(
                f"{case['name']:<14} {method:<9} {s['speedup']:>17.2f}x "
                f"{s['memory_ratio']:>20.2f} {s['max_diff']:>11.3g} {s['tolerance']:>10.3g} "
                f"{verdict(s['same_order']):>13}"
            )
            verdicts.append(
                f"{case['name']}, {method}: >= {TARGET_SPEEDUP:g}x faster: "
                f"{verdict(s['fast'])}; <= {TARGET_MEMORY_RATIO:g} x the peak memory: "
                f"{verdict(s['small'])}; equal to float32 precision, same column order: "
                f"{verdict(s['precise'])}"
            )
    print()
    print("Targets")
    print("\n".join(verdicts))
    return all(summarize(c, m)["precise"] for c in cases for m in c["checks"])


def print_decompression_ratio(cases, floor):
    """Masking's time against decompressing the file (fmriflow, no smoothing)."""
    masking = cases[0]["results"]["fmriflow"]["seconds"]
    ratio = masking / floor["seconds"]
    met = verdict(ratio <= TARGET_DECOMPRESSION_RATIO)
    print(
        f"decompressing the .nii.gz alone (gzip, read to its end): {floor['seconds']:.2f} s; "
        f"fmriflow's masking without smoothing {masking:.2f} s = {ratio:.2f}x that "
        f"(target <= {TARGET_DECOMPRESSION_RATIO:g}: {met})"
    )


def parse_args(argv=None):
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_VOLUMES} volumes instead of {FULL_VOLUMES}"
    )
    parser.add_argument("--no-smoothing", action="store_true", help="skip the smoothing case")
    add_run_options(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    n_volumes = QUICK_VOLUMES if args.quick else FULL_VOLUMES
    cases = [("no smoothing", None)]
    if not args.no_smoothing:
        cases.append((f"smoothing {SMOOTHING_FWHM:g}mm", SMOOTHING_FWHM))
    workdir = Path(tempfile.mkdtemp(prefix="bench_masking_"))
    try:
        data_dir = args.data_dir or workdir
        data_dir.mkdir(parents=True, exist_ok=True)
        bold, mask = prepare_data(data_dir, n_volumes)
        gzipped = bold.stat().st_size
        floor = min(
            (in_spawned_process(measure_decompression, bold) for _ in range(args.repeat)),
            key=lambda r: r["seconds"],
        )
        print(f"  decompressing the file alone: {floor['seconds']:6.2f} s", flush=True)
        results = [
            measure_case(name, fwhm, bold, mask, workdir, args.repeat) for name, fwhm in cases
        ]
    finally:
        shutil.rmtree(workdir)
    print()
    print(
        f"image {SHAPE + (n_volumes,)} int16, {gzipped / MB:.0f} MB gzipped; "
        f"mask {int(brain_mask().sum())} voxels; {args.repeat} run(s) per method"
    )
    print_measurements(results)
    print_decompression_ratio(results, floor)
    print()
    if not print_comparisons(results):
        raise SystemExit("values or column order differ from " + REFERENCE)


if __name__ == "__main__":
    main()
