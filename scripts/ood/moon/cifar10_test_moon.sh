#!/bin/bash
# sh scripts/ood/moon/cifar10_test_moon.sh
# OpenOOD's own test_ood pipeline on the MOON net of scripts/ood/moon/cifar10_train_moon.sh
# (moon_net.ckpt: the ResNet-18 with its unknown head, so the moon postprocessor sees K+1 logits).

python main.py \
    --config configs/datasets/cifar10/cifar10.yml \
    configs/datasets/cifar10/cifar10_ood.yml \
    configs/networks/moon.yml \
    configs/pipelines/test/test_ood_moon.yml \
    configs/preprocessors/base_preprocessor.yml \
    configs/postprocessors/moon.yml \
    --engine openood \
    --num_workers 8 \
    --network.backbone.name resnet18_32x32 \
    --network.checkpoint './results/cifar10_resnet18_32x32_set_d0.1_e100_moon/s0/moon_net.ckpt' \
    --mark 0

############################################
# alternatively, as for OpenOOD's own methods, the
# unified evaluator (our scripts/eval_ood.py keeps
# OpenOOD's interface; it loads moon_net.ckpt and
# evaluates several postprocessors per call)
python scripts/eval_ood.py \
   --id-data cifar10 \
   --root ./results/cifar10_resnet18_32x32_set_d0.1_e100_moon \
   --postprocessor msp ebo knn react moon \
   --save-score --save-csv
