#!/bin/bash
# sh scripts/ood/moon/cifar100_train_moon.sh
# MOON (RigL/SET 90 % sparse + unknown-aware loss + vote) on CIFAR100, ResNet-18, in the real OpenOOD.
# Writes results/cifar100_resnet18_32x32_set_d0.1_e100_moon/s0/ (best.ckpt, moon_net.ckpt, ood.csv, ...).
# Needs OpenOOD v1.5's data under ./data (README, "The OpenOOD engine").

python main.py \
    --config configs/datasets/cifar100/cifar100.yml \
    configs/datasets/cifar100/cifar100_ood.yml \
    configs/networks/resnet18_32x32.yml \
    configs/pipelines/train/moon.yml \
    configs/preprocessors/base_preprocessor.yml \
    configs/experiments/cifar100_resnet18_moon.yml \
    --engine openood \
    --seed 0
