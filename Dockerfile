# The project on Ray's own image, for clusters that prefer an image to shipping the code with each job
# (KubeRay's manifests in clusters/kuberay/ name it). Build and push with
#   make image REGISTRY=registry.example.com/team && docker push registry.example.com/team/deepmimic-sweep:0.1.0
# (REGISTRY is the one name to fill in: the KubeRay manifests say YOUR-REGISTRY in its place).
# A GPU base (the default) gets PyPI's CUDA build of PyTorch; BASE=rayproject/ray:2.60.0-py311-cpu a CPU one.
ARG BASE=rayproject/ray:2.60.0-py311-gpu
FROM ${BASE}
ARG TORCH=2.14.1
ARG TORCHVISION=0.29.1
WORKDIR /home/ray/deepmimic
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users platform ./platform
COPY --chown=ray:users search_spaces ./search_spaces
COPY --chown=ray:users clusters ./clusters
# The pins again in one command: no dependency may move Ray or PyTorch off the versions the cluster runs.
RUN pip install --no-cache-dir "torch==${TORCH}" "torchvision==${TORCHVISION}" && \
    pip install --no-cache-dir . "torch==${TORCH}" "torchvision==${TORCHVISION}" "ray[default,data,train,tune,serve]==2.60.0" && \
    python -c "import deepmimic, ray, torch, torchvision; print('deepmimic', deepmimic.__version__, 'ray', ray.__version__, 'torch', torch.__version__, 'torchvision', torchvision.__version__)"
