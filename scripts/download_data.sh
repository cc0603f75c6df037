#!/usr/bin/env bash
# Fetches the public NeRF example data into data/, in the layout the configs expect.
set -euo pipefail

usage() {
  cat <<'TXT'
usage: scripts/download_data.sh [--dest DIR] [DATASET ...]

Downloads the NeRF authors' public example data and unpacks it under DIR (default: data/).

DATASET (default: nerf_synthetic nerf_llff_data):
  nerf_synthetic   Blender scenes chair drums ficus hotdog lego materials mic ship, 800x800 RGBA,
                   transforms_{train,val,test}.json: -> DIR/nerf_synthetic/<scene>/
                   one zip of roughly 1.5-2 GB from Google Drive (file 18JxhpWD-4ZmuFKLzKlAw-w5PpzZxXOcG)
  nerf_llff_data   forward-facing captures fern flower fortress horns leaves orchids room trex,
                   poses_bounds.npy + images/ images_4/ images_8/: -> DIR/nerf_llff_data/<scene>/
                   one zip of roughly 2 GB from Google Drive (file 16VnMcF1KJYxN9QId6TClMsZRahHNMW5g)
  example          lego and fern only (the NeRF repository's example set), a few hundred MB,
                   from cseweb.ucsd.edu: -> DIR/nerf_synthetic/lego/ and DIR/nerf_llff_data/fern/

Sizes are approximate; check free disk space (about twice the zip while unpacking).
Google Drive needs the `gdown` package (installed with pip when missing).
A dataset whose folder already exists is skipped. The scenes are for research use; see their licences.
TXT
}

dest=data
datasets=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --dest) [ $# -ge 2 ] || { echo "download_data.sh: --dest needs a folder" >&2; exit 2; }; dest=$2; shift 2 ;;
    nerf_synthetic|nerf_llff_data|example) datasets+=("$1"); shift ;;
    *) echo "download_data.sh: unknown dataset or option '$1' (try --help)" >&2; exit 2 ;;
  esac
done
[ ${#datasets[@]} -gt 0 ] || datasets=(nerf_synthetic nerf_llff_data)
mkdir -p "$dest"

unpack() {  # unpack ZIP into DEST with Python's zipfile (no unzip binary needed), dropping macOS metadata
  python3 - "$1" "$2" <<'PY'
import sys, zipfile
archive, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(archive) as z:
    z.extractall(dest, members=[m for m in z.namelist() if not m.startswith("__MACOSX")])
PY
}

from_drive() {  # from_drive FILE_ID NAME
  local id=$1 name=$2 zip="$dest/$2.zip"
  if [ -d "$dest/$name" ]; then echo "$dest/$name exists; skipping"; return; fi
  python3 -c "import gdown" 2>/dev/null || python3 -m pip install -q gdown
  echo "downloading $name to $zip"
  python3 -m gdown "$id" -O "$zip"
  unpack "$zip" "$dest" && rm -f "$zip"
  echo "unpacked $dest/$name"
}

example() {
  local zip="$dest/nerf_example_data.zip" tmp="$dest/.nerf_example_data"
  if [ -d "$dest/nerf_synthetic/lego" ] && [ -d "$dest/nerf_llff_data/fern" ]; then echo "lego and fern exist; skipping"; return; fi
  echo "downloading the lego + fern example set to $zip"
  curl -fL --retry 3 -o "$zip" http://cseweb.ucsd.edu/~viscomp/projects/LF/papers/ECCV20/nerf/nerf_example_data.zip
  rm -rf "$tmp" && unpack "$zip" "$tmp"
  mkdir -p "$dest/nerf_synthetic" "$dest/nerf_llff_data"
  [ -d "$dest/nerf_synthetic/lego" ] || mv "$tmp/nerf_synthetic/lego" "$dest/nerf_synthetic/lego"
  [ -d "$dest/nerf_llff_data/fern" ] || mv "$tmp/nerf_llff_data/fern" "$dest/nerf_llff_data/fern"
  rm -rf "$tmp" "$zip"
  echo "unpacked $dest/nerf_synthetic/lego and $dest/nerf_llff_data/fern"
}

for d in "${datasets[@]}"; do
  case "$d" in
    nerf_synthetic) from_drive 18JxhpWD-4ZmuFKLzKlAw-w5PpzZxXOcG nerf_synthetic ;;
    nerf_llff_data) from_drive 16VnMcF1KJYxN9QId6TClMsZRahHNMW5g nerf_llff_data ;;
    example) example ;;
  esac
done
