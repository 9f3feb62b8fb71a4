/** Where a task's cell is, in words: "week1.ipynb · cell 1f0e7aa2…". */

/** The file name of a path ("a/b/week1.ipynb" → "week1.ipynb"; "~\\x.ipynb" → "x.ipynb"). */
export function baseName(path: string): string {
  const parts = path.split(/[\\/]/).filter(p => p.length > 0);
  return parts.length > 0 ? parts[parts.length - 1] : path;
}

/** A cell id short enough for a line (JupyterLab's are UUIDs). */
export function shortCellId(cellId: string): string {
  return cellId.length > 12 ? `${cellId.slice(0, 8)}…` : cellId;
}

export interface Origin {
  /** The notebook as the kernel knew it ("" when unknown). */
  notebook?: string;
  /** The notebook below this server's root, or null when it cannot be opened here. */
  notebook_path?: string | null;
  /** The nbformat id of the cell ("" when unknown). */
  cell_id?: string;
}

/**
 * "from week1.ipynb · cell 1f0e7aa2…", or "" when the task does not say
 * (submitted from plain Python, or by an older kernel).
 */
export function originText(origin: Origin): string {
  const notebook = origin.notebook_path || origin.notebook || '';
  const parts: string[] = [];
  if (notebook) {
    parts.push(`from ${baseName(notebook)}`);
  }
  if (origin.cell_id) {
    parts.push(`cell ${shortCellId(origin.cell_id)}`);
  }
  return parts.join(' · ');
}

/** The full notebook path and cell id, for a tooltip. */
export function originTitle(origin: Origin): string {
  const notebook = origin.notebook_path || origin.notebook || '';
  return [notebook, origin.cell_id ? `cell id ${origin.cell_id}` : ''].filter(Boolean).join('\n');
}
