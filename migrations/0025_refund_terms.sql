-- A unit keeps the project and key_days it was sold with: an operator's
-- retry plans again from the current catalog only the units Luarmor
-- refused because of their project (an unknown or mistyped project ID in
-- the catalog) and the order's other undelivered units of that project.
-- They are marked when the refusal is recorded, and the mark is cleared
-- once they are planned again.
ALTER TABLE order_keys ADD COLUMN replan boolean NOT NULL DEFAULT false;

-- Refusals recorded before this column existed read "luarmor refused the
-- key of project P: luarmor: <route>: HTTP <status> <code>: <Luarmor's
-- message>"; the refusal was about the project when Luarmor's message
-- names it.
UPDATE order_keys k SET replan = true
FROM order_keys refused
WHERE refused.status = 'failed' AND refused.last_error ~* 'HTTP [0-9]{3} [a-z_]+: .*project'
  AND k.checkout_session_id = refused.checkout_session_id AND k.project_id = refused.project_id
  AND k.user_key IS NULL;
