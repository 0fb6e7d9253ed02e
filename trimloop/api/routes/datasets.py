"""`/datasets`: datasets, their items, and a gold-set import."""

from __future__ import annotations

import tempfile
from pathlib import Path

from fastapi import APIRouter, Query
from sqlmodel import col, select

from trimloop.api.auth import Operator, Reader, SessionDep
from trimloop.api.schemas import DatasetItemPublic, DatasetPublic, GoldImport, GoldImportResult
from trimloop.core import store
from trimloop.core.errors import NotFound
from trimloop.core.tables import Dataset, DatasetItem
from trimloop.evals.datasets import dataset_items
from trimloop.evals.gold import ColumnMapping, import_file

router = APIRouter(prefix="/datasets", tags=["datasets"])


@router.get("", response_model=list[DatasetPublic], summary="datasets, newest first")
def list_datasets(session: SessionDep, _: Reader, prompt_id: int | None = None,
                  limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0)) -> list[Dataset]:
    query = select(Dataset)
    if prompt_id is not None:
        query = query.where(Dataset.prompt_id == prompt_id)
    return list(session.exec(query.order_by(col(Dataset.id).desc()).offset(offset).limit(limit)).all())


@router.get("/{dataset_id}", response_model=DatasetPublic, summary="one dataset")
def get_dataset(dataset_id: int, session: SessionDep, _: Reader) -> Dataset:
    dataset = session.get(Dataset, dataset_id)
    if dataset is None:
        raise NotFound(f"no dataset with id {dataset_id}", where="datasets", hint="list them: GET /datasets")
    return dataset


@router.get("/{dataset_id}/items", response_model=list[DatasetItemPublic], summary="its items in order")
def list_items(dataset_id: int, session: SessionDep, who: Reader,
               split: str | None = Query(None, pattern="^(search|holdout)$"),
               limit: int = Query(500, ge=1, le=5000), offset: int = Query(0, ge=0)) -> list[DatasetItem]:
    get_dataset(dataset_id, session, who)
    return dataset_items(session, dataset_id, split)[offset:offset + limit]


@router.post("/import", response_model=GoldImportResult, status_code=201, summary="import a gold set")
def import_gold(body: GoldImport, session: SessionDep, who: Operator) -> GoldImportResult:
    mapping = ColumnMapping(inputs=body.inputs, expected=body.expected, baseline=body.baseline)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{(body.name or 'gold').replace('/', '_')[:50]}.{body.format}"
        path.write_text(body.content, encoding="utf-8")
        result = import_file(session, prompt_id=body.prompt_id, path=path, mapping=mapping,
                             version_id=body.version_id, size=body.size,
                             holdout_fraction=body.holdout_fraction, seed=body.seed, name=body.name,
                             shown=f"upload {body.name or 'gold'}.{body.format}")
    assert result.dataset is not None
    store.record_audit(session=session, actor=who.actor, action="dataset.import", object_type="dataset",
                       object_id=result.dataset.id, after={"rows": result.rows, "skipped": len(result.problems)})
    return GoldImportResult(dataset=DatasetPublic.model_validate(result.dataset), rows=result.rows,
                            problems=[f"line {p.line}: {p.message}" for p in result.problems])
