// pipe viewer: one IndexedDB object store, opened for each operation and closed after it, so
// no page holds the database open (and blocks another page's upgrade) between operations.

/**
 * A key-value store `store` in database `db` (version 1). `run(mode, action)` runs `action`
 * on the store in one transaction and resolves with its request's result once the
 * transaction completes, that is after a write is durable, not just queued.
 */
export function objectStore(db, store) {
  const open = () => new Promise((resolve, reject) => {
    const req = indexedDB.open(db, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(store);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
    req.onblocked = () => reject(new Error('IndexedDB blocked'));
  });
  return async function run(mode, action) {
    const handle = await open();
    try {
      return await new Promise((resolve, reject) => {
        const tx = handle.transaction(store, mode);
        const req = action(tx.objectStore(store));
        let value;
        req.onsuccess = () => { value = req.result; };
        tx.oncomplete = () => resolve(value);
        tx.onerror = () => reject(tx.error);
        tx.onabort = () => reject(tx.error ?? new Error('IndexedDB transaction aborted'));
      });
    } finally {
      handle.close();
    }
  };
}
