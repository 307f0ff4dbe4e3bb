-- One open channel order per bill and channel: the final arbiter behind the order lock. Before
-- the index is made, the older of several orders still open for a bill and channel (left by the
-- days before this migration, when yesterday's order stayed open until queried) are closed; the
-- newest stays open. A payment confirmed later for a closed order is still recorded.
UPDATE channel_orders SET status = 'closed'
WHERE status = 'created' AND EXISTS (
    SELECT 1 FROM channel_orders AS newer
    WHERE newer.bill_no = channel_orders.bill_no AND newer.channel = channel_orders.channel AND newer.status = 'created'
      AND (newer.created_at > channel_orders.created_at
           OR (newer.created_at = channel_orders.created_at AND newer.order_no > channel_orders.order_no)));
CREATE UNIQUE INDEX channel_orders_open ON channel_orders (bill_no, channel) WHERE status = 'created';

-- Active queries back off: query_count queries so far, next_query_at when the next is due.
ALTER TABLE channel_orders ADD COLUMN query_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE channel_orders ADD COLUMN next_query_at {{ts}};
CREATE INDEX channel_orders_to_query ON channel_orders (status, next_query_at);
