-- Spans merge column by column (ClickHouse's vertical merge) whatever the parts' row count. A horizontal merge
-- reads every column of every source part at once, a read buffer per column stream per part; with ~50
-- columns of multi-KB agent spans that held ~400 MiB in the embedded collector's process for a merge of
-- 60,000 spans (ClickHouse starts vertical merges only at 131,072 rows). A vertical merge reads the sorting
-- key first, then one column at a time, so a merge holds about one column's buffers. Merge results are
-- unchanged: the algorithm only decides the order in which a part's columns are written.
ALTER TABLE spans MODIFY SETTING vertical_merge_algorithm_min_rows_to_activate = 1;
