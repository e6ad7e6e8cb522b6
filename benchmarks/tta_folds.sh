# usage: bash benchmarks/tta_folds.sh <bundle>   (from any folder, in the environment of the README)
# Trains the bundle and its 5 folds on its default data (fewer when the training datalist holds fewer: danie's
# embedded sample gives 4), infers its held-out validation items four ways (single, --tta, --folds all, both) with
# --save_uncertainty and scores them with attnseg evaluate --bundle (docs/inference.md). Each way runs twice and the
# second run is the one timed and scored: the first pays the one-off warm-up (OpenVINO conversion into its cache).
# TTA="--tta --tta_axes 0" sets the TTA flags (default --tta: the axes training mirrored; focal_attn_unet mirrors
# none in training, so --tta alone is refused there). SKIP_TRAIN=1 keeps an existing models/model.pt. danie's
# embedded phantoms store raw BTCV organ ids: they are scored with --label_mapping btcv (the bundle's own mapping).
set -eo pipefail
b=$1
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
echo "== $b $(date -u +%FT%TZ)"
if [ "${SKIP_TRAIN:-0}" != 1 ] || [ ! -f bundles/$b/models/model.pt ]; then
  /usr/bin/time -f "$b single training %e s" python -m monai.bundle run training --config_file bundles/$b/configs/train.json > /tmp/m_${b}_train.log 2>&1
  tail -1 /tmp/m_${b}_train.log
fi
folds=$(python -c "
from attnseg_monai.inference.bundle_loader import resolve_bundle
from attnseg_monai.inference.folds import folds_in_datalist
print(min(5, len(folds_in_datalist(resolve_bundle('$b')[0], None, {}))))" | tail -1)
echo "$b: $folds folds"
/usr/bin/time -f "$b train-folds %e s" python -m attnseg_monai train-folds $b --folds $folds --noprogress
python - "$b" <<'PY'
import json, os, shutil, sys
b = sys.argv[1]
d = json.load(open(f"bundles/{b}/eval/datalist.json"))
val = d["validation"]
json.dump({"testing": [{"image": i["image"]} for i in val]}, open(f"/tmp/m_{b}_val.json", "w"))
shutil.rmtree(f"/tmp/m_{b}_labels", ignore_errors=True)
os.makedirs(f"/tmp/m_{b}_labels")
for i in val:
    shutil.copy(i["label"], f"/tmp/m_{b}_labels/")
print(b, len(val), "validation items")
PY
tta=${TTA:---tta}
mapping=""
if [ "$b" = danie ]; then mapping="--label_mapping btcv"; fi
allfolds=$(seq -s, 0 $((folds - 1)))
for run in "single:" "single_tta:$tta" "folds:--folds $allfolds" "folds_tta:--folds $allfolds $tta"; do
  name=${run%%:*}; flags=${run#*:}
  rm -rf /tmp/m_${b}_out_$name /tmp/m_${b}_warm_$name
  python -m attnseg_monai infer $b /tmp/m_${b}_val.json /tmp/m_${b}_warm_$name $flags --save_uncertainty --num_workers 0 --noprogress > /dev/null 2>&1 || true
  /usr/bin/time -f "$b $name infer %e s" python -m attnseg_monai infer $b /tmp/m_${b}_val.json /tmp/m_${b}_out_$name $flags --save_uncertainty --num_workers 0 --noprogress > /tmp/m_${b}_infer_$name.log 2>&1
  grep "attnseg infer" /tmp/m_${b}_infer_$name.log || tail -3 /tmp/m_${b}_infer_$name.log
  python -m attnseg_monai evaluate /tmp/m_${b}_out_$name /tmp/m_${b}_labels --bundle $b $mapping --json > /tmp/m_${b}_eval_$name.json 2>/tmp/m_${b}_eval_$name.err || tail -2 /tmp/m_${b}_eval_$name.err
done
echo "== $b done $(date -u +%FT%TZ)"
